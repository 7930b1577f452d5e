"""Workspace isolation: another workspace's objects are 404, in pages and API, never 403."""

from __future__ import annotations

import pytest

from llmops.accounts.models import Membership, Role
from llmops.accounts.services import api_token_create, membership_set

# Also against PostgreSQL: the role join and row locks behave differently from SQLite.
pytestmark = pytest.mark.services


@pytest.fixture
def mallory_things(other_user, foreign_workspace, make_user):
    """What belongs to the other user: their workspace, a member in it, their token."""
    bob = make_user("bob")
    member = membership_set(workspace=foreign_workspace, user=bob, role=Role.EDITOR)
    token, _ = api_token_create(user=other_user, name="mallory-secret-token-name")
    return {"workspace": foreign_workspace, "member": member, "token": token}


def test_pages_of_another_workspace_are_404(auth_client, mallory_things, assert_isolated):
    ws, member, token = mallory_things["workspace"], mallory_things["member"], mallory_things["token"]
    assert_isolated(auth_client, f"/accounts/workspaces/{ws.id}/", hidden=[ws.name])
    assert_isolated(
        auth_client,
        f"/accounts/workspaces/{ws.id}/members/",
        f"/accounts/workspaces/{ws.id}/members/{member.id}/role/",
        f"/accounts/workspaces/{ws.id}/members/{member.id}/remove/",
        f"/accounts/settings/tokens/{token.id}/revoke/",
        methods=("post",),
        data={"username": "alice", "role": "owner"},
    )
    # Switching into it is refused the same way, and nothing was changed by any of the above.
    assert_isolated(auth_client, "/accounts/workspaces/switch/", methods=("post",), data={"workspace": ws.id})
    assert "workspace_id" not in auth_client.session
    member.refresh_from_db()
    token.refresh_from_db()
    assert member.role == Role.EDITOR and token.is_active
    assert not Membership.objects.filter(workspace=ws, user__username="alice").exists()


def test_settings_page_shows_nothing_of_another_workspace(auth_client, mallory_things):
    html = auth_client.get("/accounts/settings/").content.decode()
    assert mallory_things["workspace"].name.replace("'", "&#x27;") not in html
    assert "mallory-secret-token-name" not in html and "bob" not in html


def test_api_of_another_workspace_is_404(client, user, api_token, mallory_things, assert_isolated):
    ws, member, token = mallory_things["workspace"], mallory_things["member"], mallory_things["token"]
    assert_isolated(client, f"/api/v1/workspaces/{ws.id}", token=api_token, hidden=[ws.name])
    assert_isolated(client, f"/api/v1/tokens/{token.id}", token=api_token, methods=("delete",))
    assert_isolated(
        client,
        f"/api/v1/workspaces/{ws.id}/members",
        token=api_token,
        methods=("post",),
        data={"username": "alice", "role": "owner"},
    )
    assert_isolated(
        client,
        f"/api/v1/workspaces/{ws.id}/members/{member.id}",
        token=api_token,
        methods=("patch", "delete"),
        data={"role": "viewer"},
    )
    headers = {"Authorization": f"Bearer {api_token}"}
    listed = client.get("/api/v1/workspaces", headers=headers).json()
    assert [w["name"] for w in listed] == ["alice's workspace"]
    tokens = client.get("/api/v1/tokens", headers=headers).json()
    assert "mallory-secret-token-name" not in str(tokens)
    token.refresh_from_db()
    assert token.is_active


def test_a_member_id_of_another_workspace_is_404_in_mine(auth_client, user, workspace, mallory_things):
    """Ids are checked against the workspace in the URL, not just against existence."""
    member = mallory_things["member"]
    url = f"/accounts/workspaces/{workspace.id}/members/{member.id}/"
    assert auth_client.post(url + "role/", {"role": "viewer"}).status_code == 404
    assert auth_client.post(url + "remove/").status_code == 404


def test_assert_isolated_catches_a_leak(auth_client, user, workspace):
    """The helper itself fails when an object is visible (here: the user's own workspace)."""
    from llmops.accounts.testing import assert_isolated

    with pytest.raises(AssertionError, match="not isolated"):
        assert_isolated(auth_client, f"/accounts/workspaces/{workspace.id}/")
