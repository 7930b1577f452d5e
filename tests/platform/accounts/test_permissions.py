"""Roles: owner > editor > viewer; non-members get 404, low roles 403 (pages and API)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.test import RequestFactory

from llmops.accounts.models import Role
from llmops.accounts.permissions import RoleRequired, require_workspace_role, role_required
from llmops.accounts.selectors import user_can
from llmops.accounts.services import membership_set

# Also against PostgreSQL: the role join and row locks behave differently from SQLite.
pytestmark = pytest.mark.services


def test_require_workspace_role(user, other_user, foreign_workspace):
    with pytest.raises(Http404):
        require_workspace_role(user=user, workspace=foreign_workspace, role=Role.VIEWER)
    membership_set(workspace=foreign_workspace, user=user, role=Role.VIEWER)
    assert require_workspace_role(user=user, workspace=foreign_workspace).role == Role.VIEWER
    with pytest.raises(PermissionDenied):
        require_workspace_role(user=user, workspace=foreign_workspace, role=Role.EDITOR)
    membership_set(workspace=foreign_workspace, user=user, role=Role.EDITOR)
    require_workspace_role(user=user, workspace=foreign_workspace, role=Role.EDITOR)
    with pytest.raises(RoleRequired):
        require_workspace_role(user=user, workspace=foreign_workspace, role=Role.OWNER)
    assert user_can(user=user, workspace=foreign_workspace, role=Role.EDITOR)
    assert not user_can(user=user, workspace=foreign_workspace, role=Role.OWNER)
    with pytest.raises(Http404):
        require_workspace_role(user=user, workspace=None)


def _request(user, workspace):
    request = RequestFactory().post("/anything/")
    request.user, request.workspace = user, workspace
    return request


def test_role_required_decorator_for_views(user, other_user, foreign_workspace):
    @role_required(Role.EDITOR)
    def create_something(request):
        return HttpResponse(f"created by {request.membership.role}")

    with pytest.raises(Http404):
        create_something(_request(user, foreign_workspace))
    membership_set(workspace=foreign_workspace, user=user, role=Role.VIEWER)
    with pytest.raises(PermissionDenied):  # Django answers 403
        create_something(_request(user, foreign_workspace))
    membership_set(workspace=foreign_workspace, user=user, role=Role.EDITOR)
    assert create_something(_request(user, foreign_workspace)).content == b"created by editor"


def test_viewer_cannot_change_members_over_the_api(
    client, user, api_token, other_user, foreign_workspace, make_user
):
    make_user("bob")
    headers = {"Authorization": f"Bearer {api_token}"}
    url = f"/api/v1/workspaces/{foreign_workspace.id}/members"
    membership_set(workspace=foreign_workspace, user=user, role=Role.VIEWER)
    detail = client.get(f"/api/v1/workspaces/{foreign_workspace.id}", headers=headers)
    assert detail.status_code == 200 and detail.json()["role"] == "viewer"
    response = client.post(
        url, {"username": "bob", "role": "editor"}, content_type="application/json", headers=headers
    )
    assert response.status_code == 403
    assert response.json() == {"detail": "This needs the owner role in this workspace."}


def test_owner_manages_members_over_the_api(client, user, api_token, workspace, make_user):
    make_user("bob")
    headers = {"Authorization": f"Bearer {api_token}"}
    url = f"/api/v1/workspaces/{workspace.id}/members"
    added = client.post(
        url, {"username": "bob", "role": "viewer"}, content_type="application/json", headers=headers
    )
    assert added.status_code == 201 and added.json()["role"] == "viewer"
    member_id = added.json()["id"]
    changed = client.patch(
        f"{url}/{member_id}", {"role": "editor"}, content_type="application/json", headers=headers
    )
    assert changed.status_code == 200 and changed.json()["role"] == "editor"
    assert (
        client.patch(
            f"{url}/{member_id}", {"role": "god"}, content_type="application/json", headers=headers
        ).status_code
        == 422
    )
    assert (
        client.post(url, {"username": "nobody"}, content_type="application/json", headers=headers).status_code
        == 422
    )
    me = client.get(f"/api/v1/workspaces/{workspace.id}", headers=headers).json()
    assert [(m["username"], m["role"]) for m in me["members"]] == [("alice", "owner"), ("bob", "editor")]
    own_id = next(m["id"] for m in me["members"] if m["username"] == "alice")
    last_owner = client.delete(f"{url}/{own_id}", headers=headers)
    assert last_owner.status_code == 422 and "at least one owner" in last_owner.json()["detail"]
    assert client.delete(f"{url}/{member_id}", headers=headers).status_code == 204


def test_create_workspace_over_the_api(client, user, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    created = client.post(
        "/api/v1/workspaces", {"name": "Team"}, content_type="application/json", headers=headers
    )
    assert created.status_code == 201 and created.json()["role"] == "owner"
    names = [w["name"] for w in client.get("/api/v1/workspaces", headers=headers).json()]
    assert names == ["alice's workspace", "Team"]
