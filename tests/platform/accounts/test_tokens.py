"""Personal access tokens: created once, stored hashed, revocable at once; the API's auth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from llmops.accounts.models import ApiToken
from llmops.accounts.services import api_token_create, api_token_revoke, token_digest

ROOT = Path(__file__).resolve().parents[3]


def test_token_authenticates_the_api(client, user, bearer):
    response = client.get("/api/v1/me", headers=bearer)
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "alice"
    assert [w["role"] for w in body["workspaces"]] == ["owner"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer llmops_not-a-real-token",
        "Bearer ",
        "Basic YWxpY2U6cHc=",
        "Token llmops_x",
        "Bearer " + "x" * 5000,
    ],
)
def test_missing_or_bad_token_is_401_json(client, user, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_stored_hashed_never_the_secret(user):
    token, secret = api_token_create(user=user, name="ci")
    assert secret.startswith("llmops_") and len(secret) > 40
    row = ApiToken.objects.values().get(id=token.id)
    assert secret not in str(row)
    assert row["digest"] == token_digest(secret) and row["prefix"] == secret[:13]


def test_revoked_is_401_immediately(client, user):
    token, secret = api_token_create(user=user, name="ci")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert api_token_revoke(user=user, token_id=token.id) is True
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert api_token_revoke(user=user, token_id=token.id) is False  # already revoked


def test_deactivated_user_token_is_401(client, user, bearer):
    user.is_active = False
    user.save()
    assert client.get("/api/v1/me", headers=bearer).status_code == 401


def test_last_used_is_recorded(client, user):
    token, secret = api_token_create(user=user, name="ci")
    assert token.last_used_at is None
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_api_create_list_revoke(client, user, bearer):
    created = client.post(
        "/api/v1/tokens", {"name": "notebook"}, content_type="application/json", headers=bearer
    )
    assert created.status_code == 201
    new = created.json()
    assert new["token"].startswith(new["prefix"]) and new["active"] is True
    # The new secret works, and the listing never shows secrets.
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['token']}"}).status_code == 200
    listed = client.get("/api/v1/tokens", headers=bearer).json()
    assert {t["name"] for t in listed} == {"test", "notebook"}
    assert all("token" not in t for t in listed) and new["token"] not in str(listed)
    # Revoking is immediate and harmless to repeat.
    assert client.delete(f"/api/v1/tokens/{new['id']}", headers=bearer).status_code == 204
    assert client.delete(f"/api/v1/tokens/{new['id']}", headers=bearer).status_code == 204
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['token']}"}).status_code == 401
    assert client.delete("/api/v1/tokens/999999", headers=bearer).status_code == 404


@pytest.mark.parametrize("payload", [{"name": ""}, {"name": "x" * 101}, {}, {"name": None}])
def test_api_create_rejects_bad_names(client, user, bearer, payload):
    response = client.post("/api/v1/tokens", payload, content_type="application/json", headers=bearer)
    assert response.status_code == 422


def test_api_revoking_the_token_in_use_locks_it_out(client, user):
    token, secret = api_token_create(user=user, name="self")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.delete(f"/api/v1/tokens/{token.id}", headers=headers).status_code == 204
    assert client.get("/api/v1/tokens", headers=headers).status_code == 401


def test_session_api_writes_need_csrf(user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/api/v1/tokens").status_code == 200
    assert browser.post("/api/v1/tokens", {"name": "x"}, content_type="application/json").status_code == 403


def test_create_api_token_command(user, capsys):
    call_command("create_api_token", "alice", "--name", "deploy script")
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("llmops_") and "\n" not in secret
    assert "shown once" in err.lower()
    token = ApiToken.objects.get(user=user, name="deploy script")
    assert token.digest == token_digest(secret)


def test_create_api_token_command_unknown_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_token", "nobody")


def test_create_api_token_command_exit_code(db, tmp_path):
    """The real command line: an unknown user is one clear line on stderr and exit code 1."""
    from django.db import connection

    # The subprocess uses this test's (migrated) database; not a `services` test, so SQLite.
    env = {
        "PATH": "/usr/bin:/bin",
        "LLMOPS_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "nobody"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "CommandError: no user named 'nobody' (create one with `manage.py createsuperuser`)"
    )
    assert result.stdout == ""
