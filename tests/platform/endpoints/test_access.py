"""Endpoint keys: created once, stored hashed, revocable at once; the 401/403/404 rules;
per-key rate limit and monthly quota on the shared cache; workspace isolation; the keys API."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from llmops.endpoints import access, services
from llmops.endpoints.access import AccessError
from llmops.endpoints.models import EndpointKey, KeyScope, RequestLog
from tests.platform.endpoints.conftest import workspace_of

pytestmark = pytest.mark.django_db


def refused(secret: str | None, slug: str) -> AccessError:
    with pytest.raises(AccessError) as err:
        access.authorize_key(authorization=f"Bearer {secret}" if secret is not None else None, slug=slug)
    return err.value


def test_keys_are_stored_hashed_and_shown_once(user, publish):
    endpoint, secret = publish(user)
    key = EndpointKey.objects.get(endpoint=endpoint)
    assert secret.startswith("llmk_") and len(secret) > 40
    assert key.digest != secret and secret not in (key.prefix, key.digest) and secret.startswith(key.prefix)
    assert access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug).key_id == key.pk


def test_missing_wrong_and_revoked_keys_are_401(user, publish):
    endpoint, secret = publish(user)
    assert refused(None, endpoint.slug).status == 401
    assert "Authorization" in refused(None, endpoint.slug).message
    assert refused("llmk_nope", endpoint.slug).status == 401
    assert refused("llmops_a-personal-token", endpoint.slug).status == 401
    services.key_revoke(user=user, key=EndpointKey.objects.get(endpoint=endpoint))
    error = refused(secret, endpoint.slug)
    assert error.status == 401 and "revoked" in error.message


def test_admitted_keys_are_cached_until_anything_changes(user, publish, django_assert_num_queries):
    endpoint, secret = publish(user)
    authorization = f"Bearer {secret}"
    access.authorize_key(authorization=authorization, slug=endpoint.slug)
    with django_assert_num_queries(0):  # the endpoint and key come from this process's cache
        access.authorize_key(authorization=authorization, slug=endpoint.slug)
    # Revoked after it was cached: the very next request is refused all the same.
    services.key_revoke(user=user, key=EndpointKey.objects.get(endpoint=endpoint))
    assert refused(secret, endpoint.slug).status == 401
    # A change that bypasses the services (another process, a migration) is seen once announced.
    endpoint2, secret2 = publish(user, slug="second")
    access.authorize_key(authorization=f"Bearer {secret2}", slug=endpoint2.slug)
    type(endpoint2).objects.filter(pk=endpoint2.pk).update(is_published=False)
    access.access_changed()
    assert refused(secret2, endpoint2.slug).status == 404


def test_unknown_slug_404_other_endpoint_403(user, publish):
    first, secret = publish(user, slug="first")
    second, _ = publish(user, kind="generate", slug="second")
    assert refused(secret, "no-such-endpoint").status == 404
    error = refused(secret, second.slug)
    assert error.status == 403 and error.endpoint.endpoint_id == second.pk  # logged against the endpoint
    # A workspace-scoped key opens every endpoint of its workspace.
    _, any_secret = services.key_create(
        user=user, workspace=workspace_of(user), endpoint=None, name="all", scope=KeyScope.WORKSPACE
    )
    assert (
        access.authorize_key(authorization=f"Bearer {any_secret}", slug=second.slug).endpoint_id == second.pk
    )
    assert access.authorize_key(authorization=f"Bearer {any_secret}", slug=first.slug).endpoint_id == first.pk


def test_workspaces_are_isolated(user, other_user, publish):
    mine, my_secret = publish(user, slug="mine")
    theirs, their_secret = publish(other_user, slug="theirs")
    # A key never reaches another workspace's endpoint: it does not exist for that key.
    assert refused(my_secret, theirs.slug).status == 404
    _, workspace_secret = services.key_create(
        user=user, workspace=workspace_of(user), endpoint=None, name="ws", scope=KeyScope.WORKSPACE
    )
    assert refused(workspace_secret, theirs.slug).status == 404
    assert [g.slug for g in access.keys_models(authorization=f"Bearer {workspace_secret}")] == ["mine"]


def test_rate_limit_is_per_key_with_retry_after(user, publish):
    endpoint, secret = publish(user, rate_limit_per_minute=3)
    cache.clear()
    for _ in range(3):
        access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug)
    error = refused(secret, endpoint.slug)
    assert error.status == 429 and 1 <= int(error.headers["Retry-After"]) <= 60
    # Another key of the same endpoint has its own budget.
    _, fresh = services.key_create(user=user, workspace=workspace_of(user), endpoint=endpoint, name="other")
    access.authorize_key(authorization=f"Bearer {fresh}", slug=endpoint.slug)


def test_monthly_quota(user, publish):
    endpoint, secret = publish(user)
    key = EndpointKey.objects.get(endpoint=endpoint)
    EndpointKey.objects.filter(pk=key.pk).update(monthly_quota=2)
    cache.clear()
    access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug)
    access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug)
    error = refused(secret, endpoint.slug)
    assert error.status == 429 and "quota" in error.message.lower() and int(error.headers["Retry-After"]) > 0


def test_the_quota_counter_is_seeded_from_the_log(user, publish):
    """When the cache lost the counter, this month's logged requests still count."""
    from django.utils import timezone

    endpoint, secret = publish(user)
    key = EndpointKey.objects.get(endpoint=endpoint)
    EndpointKey.objects.filter(pk=key.pk).update(monthly_quota=3)
    for _ in range(3):
        RequestLog.objects.create(
            workspace_id=endpoint.workspace_id,
            endpoint=endpoint,
            key=key,
            request_id="r",
            route="query",
            status=200,
            created_at=timezone.now(),
        )
    cache.clear()
    assert refused(secret, endpoint.slug).status == 429


# --- the keys API (personal tokens / session) -------------------------------------------------------


def test_keys_api_create_list_revoke(client, user, api_token, publish):
    endpoint, _ = publish(user, slug="api-keys")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    created = client.post(
        "/api/v1/keys", {"endpoint": endpoint.slug, "name": "app"}, content_type="application/json", **auth
    )
    assert created.status_code == 201
    body = created.json()
    assert (
        body["secret"].startswith("llmk_") and body["endpoint"] == "api-keys" and body["scope"] == "endpoint"
    )
    listed = client.get("/api/v1/keys", **auth).json()
    assert {k["name"] for k in listed} >= {"app", "k"}
    assert all("secret" not in k for k in listed)
    assert client.delete(f"/api/v1/keys/{body['id']}", **auth).status_code == 204
    assert refused(body["secret"], endpoint.slug).status == 401
    # A workspace-scoped key needs no endpoint.
    ws_key = client.post(
        "/api/v1/keys", {"name": "everything", "scope": "workspace"}, content_type="application/json", **auth
    )
    assert ws_key.status_code == 201 and ws_key.json()["endpoint"] is None


def test_keys_api_refuses_bad_input_and_foreign_objects(client, user, other_user, api_token, publish):
    theirs, _ = publish(other_user, slug="foreign")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    assert (
        client.post(
            "/api/v1/keys", {"endpoint": "foreign", "name": "x"}, content_type="application/json", **auth
        ).status_code
        == 404
    )
    their_key = EndpointKey.objects.get(endpoint=theirs)
    assert client.delete(f"/api/v1/keys/{their_key.pk}", **auth).status_code == 404
    assert (
        client.post("/api/v1/keys", {"name": "x"}, content_type="application/json", **auth).status_code == 422
    )
    mine, _ = publish(user, slug="own")
    bad = client.post(
        "/api/v1/keys", {"endpoint": "own", "name": " "}, content_type="application/json", **auth
    )
    assert bad.status_code == 422
    assert client.get("/api/v1/keys").status_code == 401


# --- feedback --------------------------------------------------------------------------------------


def test_feedback_by_api_with_a_request_id_and_export(client, user, publish):
    endpoint, secret = publish(user, slug="fb")
    services.answer_remember(
        endpoint_id=endpoint.pk,
        request_id="req1",
        question="When do I pay?",
        result={
            "answer": "Within 30 days.",
            "sources": [{"document": "invoices.md", "score": 0.8, "text": "..."}],
        },
    )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    response = client.post(
        f"/api/v1/endpoints/{endpoint.slug}/feedback",
        {"request_id": "req1", "rating": 1, "comment": "exact"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 201, response.content
    response = client.post(
        f"/api/v1/endpoints/{endpoint.slug}/feedback",
        {"rating": -1, "question": "Q?", "answer": "wrong"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 201
    assert (
        client.post(
            f"/api/v1/endpoints/{endpoint.slug}/feedback",
            {"rating": 5, "question": "q", "answer": "a"},
            content_type="application/json",
            **auth,
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/api/v1/endpoints/{endpoint.slug}/feedback", {"rating": 1}, content_type="application/json"
        ).status_code
        == 401
    )
    client.force_login(user)
    lines = b"".join(client.get(f"/endpoints/{endpoint.slug}/feedback.jsonl?only=good").streaming_content)
    import json

    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert rows == [
        {
            "instruction": "When do I pay?",
            "input": "",
            "output": "Within 30 days.",
            "rating": 1,
            "comment": "exact",
            "sources": [{"document": "invoices.md", "score": 0.8, "text": "..."}],
            "endpoint": "fb",
            "created_at": rows[0]["created_at"],
        }
    ]
    everything = b"".join(client.get(f"/endpoints/{endpoint.slug}/feedback.jsonl").streaming_content)
    assert len(everything.decode().splitlines()) == 2


# --- hosted providers --------------------------------------------------------------------------------


def test_provider_keys_are_encrypted_at_rest(user, settings):
    from llmops.endpoints import crypto
    from llmops.endpoints.models import HostedProvider

    provider = services.provider_create(
        user=user,
        workspace=workspace_of(user),
        name="OpenAI",
        base_url="https://api.example.com/v1/",
        model="gpt-x",
        api_key="sk-very-secret-value-1234",
    )
    row = HostedProvider.objects.get(pk=provider.pk)
    assert "sk-very-secret" not in row.api_key_encrypted and row.api_key_hint == "1234"
    assert row.base_url == "https://api.example.com/v1"
    assert crypto.decrypt(row.api_key_encrypted) == "sk-very-secret-value-1234"
    settings.SECRET_KEY = "another-secret-key-entirely-" + "x" * 30
    with pytest.raises(crypto.ProviderKeyError):
        crypto.decrypt(row.api_key_encrypted)


def test_provider_input_is_validated(user):
    from llmops.endpoints.services import EndpointError

    with pytest.raises(EndpointError) as err:
        services.provider_create(
            user=user, workspace=workspace_of(user), name="x", base_url="ftp://nope", model="m"
        )
    assert err.value.field == "base_url"
