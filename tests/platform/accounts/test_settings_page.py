"""The settings page: tokens (secret shown once), workspaces, switching, members."""

from __future__ import annotations

import re

from llmops.accounts.models import ApiToken, Membership, Role
from llmops.accounts.services import api_token_create, membership_set, workspace_create

HTMX = {"HX-Request": "true"}


def secret_in(html: str) -> str:
    match = re.search(r'id="new-token-secret">(llmops_[\w-]+)<', html)
    assert match, html[:3000]
    return match.group(1)


def test_login_page_then_settings(client, user):
    assert client.get("/accounts/settings/").status_code == 302  # login required
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="username"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": user.raw_password}, follow=True
    )
    assert response.status_code == 200 and response.context["user"] == user
    settings_page = client.get("/accounts/settings/")
    assert settings_page.status_code == 200
    html = settings_page.content.decode()
    assert "No tokens yet" in html and "alice&#x27;s workspace" in html


def test_wrong_password_says_so(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"didn't match" in response.content


def test_create_token_with_htmx_shows_the_secret_once(auth_client, user):
    response = auth_client.post("/accounts/settings/tokens/new/", {"name": "laptop"}, headers=HTMX)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    assert "<html" not in html  # a partial: the tokens card only
    secret = secret_in(html)
    assert "shown only this once" in html and "data-copy" in html
    token = ApiToken.objects.get(user=user, name="laptop")
    assert token.prefix in html
    # The secret works, and it never appears again.
    assert auth_client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    for url in ("/accounts/settings/", "/accounts/settings/tokens/"):
        again = auth_client.get(url).content.decode()
        assert secret not in again and token.prefix in again


def test_create_token_without_javascript_renders_the_full_page(auth_client, user):
    response = auth_client.post("/accounts/settings/tokens/new/", {"name": "curl"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html and secret_in(html)


def test_create_token_needs_a_name(auth_client, user):
    response = auth_client.post("/accounts/settings/tokens/new/", {"name": "   "}, headers=HTMX)
    assert b"Give the token a name" in response.content
    assert not ApiToken.objects.filter(user=user).exists()
    assert auth_client.post("/accounts/settings/tokens/new/", {"name": ""}).status_code == 400


def test_token_list_shows_status_and_revoke(auth_client, user):
    token, secret = api_token_create(user=user, name="ci")
    html = auth_client.get("/accounts/settings/tokens/", headers=HTMX).content.decode()
    assert "ci" in html and f"{token.prefix}…" in html and "active" in html and "never" in html
    assert 'hx-confirm="Revoke' in html
    revoked = auth_client.post(f"/accounts/settings/tokens/{token.id}/revoke/", headers=HTMX)
    assert revoked.status_code == 200 and b"revoked" in revoked.content
    assert auth_client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    # Without htmx: back to the page with a message.
    token2, _ = api_token_create(user=user, name="ci2")
    response = auth_client.post(f"/accounts/settings/tokens/{token2.id}/revoke/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/settings/"
    assert "revoked" in response.content.decode()


def test_pages_are_get_or_post_only(auth_client, user):
    assert auth_client.get("/accounts/settings/tokens/new/").status_code == 405
    assert auth_client.post("/accounts/settings/").status_code == 405


def test_create_workspace_and_switch(auth_client, user):
    response = auth_client.post("/accounts/workspaces/new/", {"name": "Support bot"}, follow=True)
    assert response.status_code == 200
    created = Membership.objects.get(user=user, workspace__name="Support bot")
    assert created.role == Role.OWNER
    assert auth_client.session["workspace_id"] == created.workspace_id  # now the current one
    html = auth_client.get("/accounts/settings/").content.decode()
    assert "Members of Support bot" in html
    # Switch back to the personal workspace; `next` brings the user back where they were.
    personal = Membership.objects.get(user=user, workspace__name="alice's workspace").workspace
    response = auth_client.post("/accounts/workspaces/switch/", {"workspace": personal.id, "next": "/runs/"})
    assert response.status_code == 302 and response["Location"] == "/runs/"
    assert auth_client.session["workspace_id"] == personal.id
    # An off-site `next` is ignored.
    response = auth_client.post(
        "/accounts/workspaces/switch/", {"workspace": created.workspace_id, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_switch_with_htmx_redirects_the_page(auth_client, user):
    other = workspace_create(name="Second", owner=user)
    response = auth_client.post(
        "/accounts/workspaces/switch/", {"workspace": other.id, "next": "/pipelines/"}, headers=HTMX
    )
    assert response.status_code == 204 and response["HX-Redirect"] == "/pipelines/"


def test_workspace_name_is_required(auth_client, user):
    response = auth_client.post("/accounts/workspaces/new/", {"name": ""}, headers=HTMX)
    assert b"Give the workspace a name" in response.content
    assert Membership.objects.filter(user=user).count() == 1


def test_switcher_partial(auth_client, user, client):
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    workspace_create(name="Second", owner=user)
    request = RequestFactory().get("/pipelines/")
    request.user = user
    request.session = {}
    from llmops.accounts.context_processors import workspace as ctx
    from llmops.accounts.selectors import workspace_for_request

    request.workspace = workspace_for_request(user=user, session={})
    html = render_to_string("accounts/_workspace_switcher.html", ctx(request), request=request)
    assert (
        'action="/accounts/workspaces/switch/"' in html
        and "Second" in html
        and "alice&#x27;s workspace" in html
    )
    assert 'name="next" value="/pipelines/"' in html


def test_owner_manages_members(auth_client, user, other_user, make_user):
    workspace = Membership.objects.get(user=user).workspace
    url = f"/accounts/workspaces/{workspace.id}/"
    html = auth_client.get(url).content.decode()
    assert "Add member" in html
    # Add by user name, with a role.
    response = auth_client.post(url + "members/", {"username": "mallory", "role": "viewer"}, headers=HTMX)
    assert b"mallory added as viewer" in response.content
    member = Membership.objects.get(workspace=workspace, user=other_user)
    assert member.role == Role.VIEWER
    # Unknown user, duplicate, bad role: clear messages, nothing changes.
    for data, text in [
        ({"username": "nobody", "role": "editor"}, b"There is no user named"),
        ({"username": "mallory", "role": "editor"}, b"already a member"),
        ({"username": "mallory", "role": "admin"}, b"Unknown role"),
    ]:
        assert text in auth_client.post(url + "members/", data, headers=HTMX).content
    # Change the role, then remove.
    auth_client.post(url + f"members/{member.id}/role/", {"role": "editor"}, headers=HTMX)
    member.refresh_from_db()
    assert member.role == Role.EDITOR
    auth_client.post(url + f"members/{member.id}/remove/", headers=HTMX)
    assert not Membership.objects.filter(id=member.id).exists()


def test_workspace_keeps_an_owner(auth_client, user, other_user):
    workspace = Membership.objects.get(user=user).workspace
    mine = Membership.objects.get(user=user, workspace=workspace)
    url = f"/accounts/workspaces/{workspace.id}/members/{mine.id}/"
    response = auth_client.post(url + "role/", {"role": "viewer"}, headers=HTMX)
    assert b"at least one owner" in response.content
    assert auth_client.post(url + "remove/", headers=HTMX).content.count(b"at least one owner") == 1
    mine.refresh_from_db()
    assert mine.role == Role.OWNER
    # With a second owner, the first may leave; the workspace is then gone for them.
    membership_set(workspace=workspace, user=other_user, role=Role.OWNER)
    response = auth_client.post(url + "remove/")
    assert response.status_code == 302 and response["Location"] == "/accounts/settings/"
    assert auth_client.get(f"/accounts/workspaces/{workspace.id}/").status_code == 404


def test_viewer_and_editor_cannot_change_members(client, user, other_user, make_user):
    workspace = Membership.objects.get(user=other_user).workspace
    bob = make_user("bob")
    for role in (Role.VIEWER, Role.EDITOR):
        membership_set(workspace=workspace, user=user, role=role)
        client.force_login(user)
        page = client.get(f"/accounts/workspaces/{workspace.id}/").content.decode()
        assert "Only owners can" in page and "Add member" not in page
        url = f"/accounts/workspaces/{workspace.id}/members/"
        assert client.post(url, {"username": "bob", "role": "viewer"}).status_code == 403
        owner = Membership.objects.get(workspace=workspace, user=other_user)
        assert client.post(f"{url}{owner.id}/role/", {"role": "viewer"}).status_code == 403
        assert client.post(f"{url}{owner.id}/remove/").status_code == 403
    assert not Membership.objects.filter(workspace=workspace, user=bob).exists()
    assert Membership.objects.get(workspace=workspace, user=other_user).role == Role.OWNER


def test_current_workspace_defaults_to_the_one_joined_first(client, user, other_user):
    # Invited into "Aardvark" later: alice still starts in her own workspace, not the first by name.
    aardvark = workspace_create(name="Aardvark", owner=other_user)
    membership_set(workspace=aardvark, user=user, role=Role.VIEWER)
    client.force_login(user)
    response = client.get("/accounts/settings/")
    assert response.context["current_workspace"].name == "alice's workspace"
