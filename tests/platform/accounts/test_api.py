"""/api/v1: me, workspaces with the caller's role, and the OpenAPI schema and docs (offline)."""

from __future__ import annotations

import re

import pytest

from llmops.accounts.models import Role
from llmops.accounts.services import membership_set

# Also against PostgreSQL: the role join and row locks behave differently from SQLite.
pytestmark = pytest.mark.services


def test_me_and_workspaces_show_my_own_role(
    client, user, api_token, other_user, foreign_workspace, workspace
):
    # Two members in each workspace: the role reported must be the caller's, not a neighbour's.
    membership_set(workspace=foreign_workspace, user=user, role=Role.VIEWER)
    membership_set(workspace=workspace, user=other_user, role=Role.EDITOR)
    headers = {"Authorization": f"Bearer {api_token}"}
    listed = client.get("/api/v1/workspaces", headers=headers).json()
    assert {w["name"]: w["role"] for w in listed} == {
        "alice's workspace": "owner",
        "mallory's workspace": "viewer",
    }
    me = client.get("/api/v1/me", headers=headers).json()
    assert {w["name"]: w["role"] for w in me["workspaces"]} == {
        "alice's workspace": "owner",
        "mallory's workspace": "viewer",
    }


def test_session_works_for_the_browser(auth_client, user):
    assert auth_client.get("/api/v1/me").json()["username"] == "alice"


def test_openapi_schema_lists_the_accounts_api(client, db):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in ("/api/v1/me", "/api/v1/tokens", "/api/v1/tokens/{token_id}", "/api/v1/workspaces"):
        assert path in paths, sorted(paths)
    assert set(paths["/api/v1/tokens"]) >= {"get", "post"} and "delete" in paths["/api/v1/tokens/{token_id}"]
    assert any(
        s.get("type") == "http" and s.get("scheme") == "bearer"
        for s in schema["components"]["securitySchemes"].values()
    )


def test_docs_page_uses_only_local_assets(client, db):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    assert all(a.startswith("/") for a in assets), f"external assets would break offline: {assets}"
    for asset in assets:
        if asset.startswith("/static/"):
            served = client.get(asset)
            assert served.status_code == 200, asset
            served.close()
