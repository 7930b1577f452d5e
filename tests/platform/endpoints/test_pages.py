"""Endpoint pages: list, detail (snippets with the real URL, keys shown once, usage), the
playground's bounded failure without workers, publishing from a run, isolation."""

from __future__ import annotations

import pytest
from django.utils import timezone

from llmops.endpoints.models import Endpoint, EndpointKey, RequestLog
from tests.platform.endpoints.conftest import store_service, workspace_of
from tests.platform.endpoints.test_publishing import make_run

# Transactional: the async views do their database work on a pool of threads (dbthreads.py),
# which see only committed rows.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.platform.endpoints.live_urls")]


def test_list_and_detail_pages(auth_client, user, publish):
    endpoint, _ = publish(user, slug="docs-qa")
    listing = auth_client.get("/endpoints/")
    assert listing.status_code == 200 and b"docs-qa" in listing.content
    page = auth_client.get("/endpoints/docs-qa/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "http://testserver/api/v1/endpoints/docs-qa/query" in text  # snippets carry the real URL
    assert "base_url=&#x27;http://testserver/v1&#x27;" in text or "http://testserver/v1" in text
    assert "export LLMOPS_KEY=&lt;your endpoint key&gt;" in text
    assert 'id="chart-requests"' in text and "/api/v1/docs" in text
    assert 'id="playground"' in text


def test_a_key_made_on_the_page_is_shown_once_in_the_snippets(auth_client, user, publish):
    endpoint, _ = publish(user, slug="keyed")
    response = auth_client.post("/endpoints/keyed/keys/", {"name": "laptop"}, follow=True)
    key = EndpointKey.objects.get(endpoint=endpoint, name="laptop")
    text = response.content.decode()
    secret = text.split('id="fresh-secret">')[1].split("<")[0]
    assert secret.startswith(key.prefix) and f"export LLMOPS_KEY={secret}" in text
    again = auth_client.get("/endpoints/keyed/").content.decode()
    assert secret not in again
    # htmx gets the keys partial only
    partial = auth_client.post("/endpoints/keyed/keys/", {"name": "htmx"}, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b'id="keys"' in partial.content and b"<html" not in partial.content
    revoke = auth_client.post(
        f"/endpoints/keys/{key.pk}/revoke/", {"endpoint": "keyed"}, HTTP_HX_REQUEST="true"
    )
    assert revoke.status_code == 200 and EndpointKey.objects.get(pk=key.pk).revoked_at is not None


def test_playground_without_workers_fails_fast(auth_client, user, publish, settings):
    settings.LLMOPS_SERVE_ACCEPT_TIMEOUT_S = 0.3
    publish(user, slug="pg")
    response = auth_client.post(
        "/endpoints/pg/playground/", {"query": "llamas"}, content_type="application/json"
    )
    assert response.status_code == 503 and response["Retry-After"]
    assert RequestLog.objects.get(route="playground").status == 503
    bad = auth_client.post("/endpoints/pg/playground/", {"query": ""}, content_type="application/json")
    assert bad.status_code == 422 and bad.json()["field"] == "query"


def test_usage_json_has_per_minute_percentiles(auth_client, user, publish):
    endpoint, _ = publish(user, slug="busy")
    now = timezone.now()
    for latency, status in ((10, 200), (20, 200), (30, 200), (400, 200), (5, 401)):
        RequestLog.objects.create(
            workspace_id=endpoint.workspace_id,
            endpoint=endpoint,
            request_id="r",
            route="query",
            status=status,
            latency_ms=latency,
            created_at=now,
        )
    usage = auth_client.get("/endpoints/busy/usage.json?minutes=5").json()
    assert usage["minutes"] == 5 and len(usage["labels"]) == 5
    assert sum(usage["requests"]) == 5 and sum(usage["errors"]) == 1
    assert usage["p50_all_ms"] == 20 and usage["p95_all_ms"] == 400


def test_publish_a_run_from_its_page_gives_an_endpoint_and_a_key(auth_client, user, toy_services):
    artifact = store_service(workspace=workspace_of(user), folder=toy_services["extractive"], name="page")
    run = make_run(user, artifacts={"serve": artifact}, name="Handbook")
    confirm = auth_client.get(f"/endpoints/publish/?run={run.pk}")
    assert confirm.status_code == 200 and b"Publish run" in confirm.content
    response = auth_client.post("/endpoints/publish/", {"run": run.pk}, follow=True)
    endpoint = Endpoint.objects.get(slug="handbook")
    assert response.redirect_chain[-1][0] == "/endpoints/handbook/"
    text = response.content.decode()
    key = EndpointKey.objects.get(endpoint=endpoint)
    assert 'id="fresh-secret">' + key.prefix in text and "export LLMOPS_KEY=" + key.prefix in text
    taken = auth_client.post("/endpoints/publish/", {"run": run.pk, "slug": "Not A Slug"})
    assert taken.status_code == 422 and b"lowercase" in taken.content


def test_other_workspaces_pages_are_404(client, user, other_user, publish):
    publish(user, slug="private")
    client.force_login(other_user)
    for url in ("/endpoints/private/", "/endpoints/private/usage.json", "/endpoints/private/feedback.jsonl"):
        assert client.get(url).status_code == 404
    assert client.post("/endpoints/private/keys/", {"name": "x"}).status_code == 404
    assert (
        client.post(
            "/endpoints/private/playground/", {"query": "q"}, content_type="application/json"
        ).status_code
        == 404
    )


def test_the_run_pages_publish_button(user, toy_services):
    from django.template.loader import render_to_string

    artifact = store_service(workspace=workspace_of(user), folder=toy_services["extractive"], name="btn")
    run = make_run(user, artifacts={"serve": artifact})
    html = render_to_string("endpoints/_publish_button.html", {"run": run, "csrf_token": "t"})
    assert 'action="/endpoints/publish/"' in html and f'value="{run.pk}"' in html
    run.status = "failed"
    assert "form" not in render_to_string("endpoints/_publish_button.html", {"run": run})


def test_openapi_documents_the_query_protocol(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/endpoints/{slug}/query"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) >= {"query", "max_tokens", "temperature"}
    assert operation["security"] == [{"EndpointKey": []}]
    assert schema["components"]["securitySchemes"]["EndpointKey"]["scheme"] == "bearer"
    assert {"200", "401", "403", "404", "422", "429", "503"} <= set(operation["responses"])
