"""No serve worker: a bounded wait, then 503 with Retry-After (never a hung request)."""

from __future__ import annotations

import httpx
import openai
import pytest

from llmops.endpoints.models import RequestLog

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


def test_no_worker_is_a_503_with_retry_after(live_without_workers, user, publish):
    live = live_without_workers
    endpoint, secret = publish(user, kind="extractive", slug="nobody-home")
    # The client's own timeout is far above the server's bound: a hang would fail here.
    response = httpx.post(
        f"{live.url}/api/v1/endpoints/{endpoint.slug}/query",
        json={"query": "llamas"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "serve worker" in response.json()["detail"]
    api = openai.OpenAI(base_url=f"{live.url}/v1", api_key=secret, max_retries=0, timeout=60)
    with pytest.raises(openai.APIStatusError) as err:
        api.chat.completions.create(
            model=endpoint.slug, messages=[{"role": "user", "content": "llamas"}], stream=True
        )
    assert err.value.status_code == 503
    assert RequestLog.objects.filter(endpoint=endpoint, status=503).count() == 2
