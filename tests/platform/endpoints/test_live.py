"""The whole serving path, live: daphne (ASGI) and a real Celery serve worker, on the test
database and Redis, called with httpx and with the official ``openai`` client."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from llmops.endpoints.models import EndpointKey, RequestLog
from tests.pipelines.serving.toys import ADAPTERS
from tests.platform.endpoints.conftest import workspace_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

INVOICE_Q = "How many days do I have to pay an invoice by bank transfer?"
HIKING_Q = "Where does the trail to the summit start and what should I bring?"
TIMEOUT = httpx.Timeout(90.0)


def query(live, slug: str, secret: str | None, body: dict, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(
        f"{live.url}/api/v1/endpoints/{slug}/query", json=body, headers=headers, timeout=TIMEOUT, **kw
    )


def eventually(check, timeout: float = 15.0):
    """The request log of an answer is written just after the answer is sent: poll for it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def client(live, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=secret, max_retries=0, timeout=90)


def sse_events(lines) -> list:
    events = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_query_protocol_answers_with_the_right_sources(live, user, publish):
    endpoint, secret = publish(user, kind="extractive")
    response = query(live, endpoint.slug, secret, {"query": INVOICE_Q, "max_tokens": 64, "temperature": 0.2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"answer", "sources", "usage", "latency_ms", "id"}
    assert body["sources"][0]["document"] == "invoices.md"
    assert set(body["sources"][0]) >= {"document", "chunk", "score", "text"}
    assert "30 days" in body["answer"]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] == 0
    assert body["latency_ms"] > 0
    log = eventually(lambda: RequestLog.objects.filter(request_id=body["id"]).first())
    assert (log.status, log.route, log.key_id) == (
        200,
        "query",
        EndpointKey.objects.get(endpoint=endpoint).pk,
    )


def test_openai_client_plain_and_streaming(live, user, publish):
    endpoint, secret = publish(user, kind="generate")
    api = client(live, secret)
    assert endpoint.slug in [m.id for m in api.models.list().data]
    completion = api.chat.completions.create(
        model=endpoint.slug,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": HIKING_Q}],
        max_tokens=12,
        temperature=0,
    )
    answer = completion.choices[0].message.content
    assert completion.model == endpoint.slug and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 10 and 0 < completion.usage.completion_tokens <= 12
    assert completion.sources[0]["document"] == "hiking.md"  # the extension field survives the client
    stream = api.chat.completions.create(
        model=endpoint.slug,
        messages=[{"role": "user", "content": HIKING_Q}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces).strip() == answer  # greedy: the same answer, streamed
    assert finish in ("stop", "length") and usage.completion_tokens == completion.usage.completion_tokens


def test_query_streams_server_sent_events(live, user, publish):
    endpoint, secret = publish(user, kind="generate")
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"query": INVOICE_Q, "max_tokens": 10, "temperature": 0, "stream": True}
    with httpx.stream(
        "POST",
        f"{live.url}/api/v1/endpoints/{endpoint.slug}/query",
        json=body,
        headers=headers,
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    done = events[-2]
    deltas = [e["text"] for e in events if isinstance(e, dict) and e["type"] == "delta"]
    assert done["type"] == "done" and "".join(deltas).strip() == done["answer"]
    assert done["sources"][0]["document"] == "invoices.md"


def test_sixteen_concurrent_clients(live, user, publish):
    endpoint, secret = publish(user, kind="generate", rate_limit_per_minute=1000)
    questions = [INVOICE_Q, HIKING_Q, "How often should llamas be shorn?", "What does the hut serve?"] * 4

    def ask(question):
        return query(live, endpoint.slug, secret, {"query": question, "max_tokens": 8, "temperature": 0.5})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(ask, questions))
    assert [r.status_code for r in responses] == [200] * 16, [
        r.text for r in responses if r.status_code != 200
    ]
    assert len({r.json()["id"] for r in responses}) == 16
    assert eventually(lambda: RequestLog.objects.filter(endpoint=endpoint, status=200).count() == 16)


def test_revocation_applies_to_the_next_request_and_rate_limit(live, user, api_token, publish):
    endpoint, secret = publish(user, kind="extractive", rate_limit_per_minute=2)
    body = {"query": "llamas"}
    first = query(live, endpoint.slug, secret, body)
    second = query(live, endpoint.slug, secret, body)
    limited = query(live, endpoint.slug, secret, body)
    if first.status_code == 429:  # the minute turned between the first two calls: one more try
        first, second, limited = second, limited, query(live, endpoint.slug, secret, body)
    assert (first.status_code, second.status_code, limited.status_code) == (200, 200, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    key = EndpointKey.objects.get(endpoint=endpoint)
    revoke = httpx.delete(
        f"{live.url}/api/v1/keys/{key.pk}", headers={"Authorization": f"Bearer {api_token}"}
    )
    assert revoke.status_code == 204
    after = query(live, endpoint.slug, secret, body)
    assert after.status_code == 401 and "revoked" in after.json()["detail"]

    def statuses():
        return sorted(RequestLog.objects.filter(endpoint=endpoint).values_list("status", flat=True))

    assert eventually(lambda: statuses().count(200) >= 2)
    assert {401, 429} <= set(statuses())  # every request logged, the refused ones too


def test_bad_requests_over_http(live, user, publish):
    endpoint, secret = publish(user, kind="extractive", slug="bad-requests")
    other, _ = publish(user, kind="generate", slug="bad-requests-other")
    ok = {"query": "llamas"}
    assert query(live, endpoint.slug, None, ok).status_code == 401
    assert query(live, endpoint.slug, "llmk_wrong", ok).status_code == 401
    assert query(live, other.slug, secret, ok).status_code == 403
    assert query(live, "no-such-slug", secret, ok).status_code == 404
    for body, field in (
        ({"query": "x" * 5000}, "query"),
        ({"query": "q", "max_tokens": 0}, "max_tokens"),
        ({"query": "q", "temperature": 3}, "temperature"),
        ({"query": "q", "adapter": "nope"}, "adapter"),
        ({"max_tokens": 5}, "query"),
    ):
        response = query(live, endpoint.slug, secret, body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field and field in response.json()["detail"]
    api = client(live, secret)
    with pytest.raises(openai.AuthenticationError):
        client(live, "llmk_wrong").chat.completions.create(
            model=endpoint.slug, messages=[{"role": "user", "content": "q"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model=other.slug, messages=[{"role": "user", "content": "q"}])
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="nothing-here", messages=[{"role": "user", "content": "q"}])
    with pytest.raises(openai.UnprocessableEntityError) as err:
        api.chat.completions.create(model=endpoint.slug, messages=[{"role": "user", "content": "q"}], n=2)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.UnprocessableEntityError):
        api.chat.completions.create(model=endpoint.slug, messages=[{"role": "assistant", "content": "hi"}])


def test_multi_lora_routing_over_http(live, user, publish):
    endpoint, secret = publish(user, kind="lora")
    routed = {
        q: query(live, endpoint.slug, secret, {"query": q, "temperature": 0}).json()
        for q in (INVOICE_Q, HIKING_Q)
    }
    assert routed[INVOICE_Q]["adapter"] == "billing" and routed[HIKING_Q]["adapter"] == "outdoors"
    named = query(
        live, endpoint.slug, secret, {"query": INVOICE_Q, "temperature": 0, "adapter": "outdoors"}
    ).json()
    assert named["adapter"] == "outdoors"
    assert set(ADAPTERS) == {"billing", "outdoors"}


def test_a_client_that_disconnects_frees_the_worker(live, user, publish):
    """Read one chunk, hang up: the worker stops that answer at once (it reports it cancelled)
    instead of writing all 1,500 tokens nobody will read."""
    import redis
    from django.conf import settings

    from llmops.endpoints import wire

    endpoint, secret = publish(user, kind="slow")
    body = {"model": endpoint.slug, "messages": [{"role": "user", "content": INVOICE_Q}], "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.stream(
        "POST", f"{live.url}/v1/chat/completions", json=body, timeout=TIMEOUT, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = (line for line in response.iter_lines() if line.startswith("data: "))
        first = json.loads(next(lines)[len("data: ") :])
        next(lines)  # a piece of the answer has been written: the worker is generating
    request_id = first["id"].removeprefix("chatcmpl-")
    store = redis.Redis.from_url(settings.REDIS.client_url)
    deadline = time.monotonic() + 60
    done = None
    while done is None and time.monotonic() < deadline:
        events = [json.loads(raw) for raw in store.lrange(wire.reply_key(request_id), 0, -1)]
        done = next((e for e in events if e["type"] == "done"), None)
        time.sleep(0.2)
    assert store.exists(wire.cancel_key(request_id))  # the web told the worker
    assert done is not None, "the worker never let go of the abandoned request"
    assert done["finish_reason"] == "cancelled"
    assert done["usage"]["completion_tokens"] < 1500
    log = None
    while log is None and time.monotonic() < deadline:
        log = RequestLog.objects.filter(request_id=request_id).first()
        time.sleep(0.1)
    assert log.status == 499
    # The worker is free again: the next request is answered.
    assert query(live, endpoint.slug, secret, {"query": "llamas", "max_tokens": 2}).status_code == 200


def test_workspaces_are_isolated_over_http(live, user, other_user, publish):
    mine, my_secret = publish(user, kind="extractive", slug="iso-mine")
    theirs, their_secret = publish(other_user, kind="extractive", slug="iso-theirs")
    assert query(live, theirs.slug, my_secret, {"query": "q"}).status_code == 404
    assert [m.id for m in client(live, their_secret).models.list().data] == ["iso-theirs"]
    from llmops.accounts.services import api_token_create

    _, token = api_token_create(user=other_user, name="t")
    assert (
        httpx.get(
            f"{live.url}/api/v1/endpoints/{mine.slug}", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )
    assert workspace_of(user) != workspace_of(other_user)


def test_a_hosted_model_writes_the_answers(live, user, publish):
    """The endpoint's generator switched to a hosted OpenAI-compatible API: here another
    endpoint of this very server, reached by the worker with the decrypted key."""
    from llmops.endpoints import services

    extractive, extractive_key = publish(user, kind="extractive", slug="hosted-backend")
    endpoint, secret = publish(user, kind="generate", slug="hosted-front")
    provider = services.provider_create(
        user=user,
        workspace=workspace_of(user),
        name="Self",
        base_url=f"{live.url}/v1",
        model=extractive.slug,
        api_key=extractive_key,
    )
    services.endpoint_update(user=user, endpoint=endpoint, provider_id=provider.pk)
    body = query(live, endpoint.slug, secret, {"query": INVOICE_Q, "max_tokens": 64}).json()
    assert body["mode"] == "hosted"
    # The backend answered extractively from the prompt's question: its passages name the document.
    assert "invoices.md" in body["answer"]
    assert body["sources"][0]["document"] == "invoices.md"
    assert eventually(
        lambda: RequestLog.objects.filter(endpoint=extractive, route="chat", status=200).exists()
    )
