"""The request handlers behind every way of asking an endpoint: ``/query`` (REST), the
OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``, and the page's playground.

All are async views: a request waiting for its serve worker holds no thread. They share one
path: authorize (key or signed-in member) -> validate -> hand to a worker (gateway) ->
relay the answer as JSON or as server-sent events -> log the request. Database work runs
on a small pool of threads that keep their connection (dbthreads.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.endpoints import access, services
from llmops.endpoints.access import AccessError, Grant
from llmops.endpoints.dbthreads import db, on_pool
from llmops.endpoints.gateway import Ask, Exchange
from pipelines.serving.protocol import BASE_ADAPTER, MAX_QUERY_CHARS, MAX_TEMPERATURE, MAX_TOKENS_CAP, QueryIn

logger = logging.getLogger(__name__)
CLIENT_GONE = 499  # nginx's "client closed request": the client left before the answer


# --- bodies ---------------------------------------------------------------------------------------


def _json(request: HttpRequest) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise AccessError(413, "The request body is too large.") from exc
    if not raw:
        raise AccessError(422, "body: send a JSON object.", field="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AccessError(400, f"The body is not valid JSON: {exc}.") from exc


def _invalid(exc: ValidationError) -> AccessError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
    error = AccessError(422, f"{loc}: {first.get('msg', 'invalid')}", field=loc.split(".")[0])
    error.errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    return error


def _check_adapter(grant: Grant, adapter: str | None) -> None:
    names = grant.adapters
    if adapter and adapter != BASE_ADAPTER and adapter not in names:
        have = ", ".join([BASE_ADAPTER, *names]) if names else "none (only “base”)"
        raise AccessError(
            422, f"adapter: unknown adapter {adapter!r}; this endpoint has {have}.", field="adapter"
        )


def parse_query(data: Any, grant: Grant) -> Ask:
    if not isinstance(data, dict):
        raise AccessError(422, "body: send a JSON object.", field="body")
    try:
        body = QueryIn.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    _check_adapter(grant, body.adapter)
    return Ask(
        query=body.query,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        adapter=body.adapter,
        stream=body.stream,
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(max_length=20)
    content: str | list[dict[str, Any]] | None = None


class ChatIn(BaseModel):
    """The OpenAI chat-completions body; parameters this platform has no use for are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_CAP)
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only one answer per request.")
    adapter: str | None = Field(None, max_length=64)


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type") in (None, "text"))
    return content or ""


def parse_chat(data: dict[str, Any], grant: Grant) -> tuple[Ask, ChatIn]:
    """The question is the last user message: retrieval answers one question at a time."""
    try:
        body = ChatIn.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    question = next((_text(m.content) for m in reversed(body.messages) if m.role == "user"), "").strip()
    if not question:
        raise AccessError(422, "messages: send at least one user message with text.", field="messages")
    if len(question) > MAX_QUERY_CHARS:
        raise AccessError(
            422,
            f"messages: the last user message has more than {MAX_QUERY_CHARS} characters.",
            field="messages",
        )
    _check_adapter(grant, body.adapter)
    ask = Ask(
        query=question,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        adapter=body.adapter,
        stream=body.stream,
    )
    return ask, body


# --- logging ---------------------------------------------------------------------------------------


def _log_writer(
    grant: Grant | None,
    *,
    route: str,
    request_id: str,
    status: int,
    latency_ms: float,
    result: dict[str, Any] | None = None,
    error: str = "",
    question: str = "",
):
    """A sync function that writes the request's log line (None: no endpoint to attach it to)."""
    if grant is None:
        return None
    usage = (result or {}).get("usage") or {}

    def write() -> None:
        services.request_log_create(
            endpoint_id=grant.endpoint_id,
            workspace_id=grant.workspace_id,
            version_id=grant.version_id,
            key_id=grant.key_id,
            request_id=request_id,
            route=route,
            status=status,
            latency_ms=latency_ms,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            error=error,
        )
        if result is not None and question:
            services.answer_remember(
                endpoint_id=grant.endpoint_id, request_id=request_id, question=question, result=result
            )

    return write


async def _log(grant: Grant | None, **entry: Any) -> None:
    write = _log_writer(grant, **entry)
    if write is not None:
        await db(write)()


def _log_after_sending(response: HttpResponse, grant: Grant, **entry: Any) -> HttpResponse:
    """Write the log once the answer is on its way: Django closes a response after sending it,
    so the client does not wait for the database (the test client closes it before returning)."""
    write = _log_writer(grant, **entry)
    close = response.close

    def close_and_log() -> None:
        try:
            on_pool(write)
        except Exception:  # noqa: BLE001 - a lost log line must not fail an answer already sent
            logger.exception("could not log request %s", entry.get("request_id"))
        finally:
            close()

    response.close = close_and_log
    return response


# --- responses ------------------------------------------------------------------------------------


def rest_error(error: AccessError) -> JsonResponse:
    body: dict[str, Any] = {"detail": error.message}
    if error.field:
        body["field"] = error.field
    if getattr(error, "errors", None):
        body["errors"] = error.errors
    response = JsonResponse(body, status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    400: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


def openai_error_body(error: AccessError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": OPENAI_TYPES.get(error.status, "api_error"),
            "param": error.field,
            "code": error.code or None,
        }
    }


def openai_error(error: AccessError) -> JsonResponse:
    response = JsonResponse(openai_error_body(error), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def query_body(result: dict[str, Any], *, request_id: str, latency_ms: float, grant: Grant) -> dict[str, Any]:
    return {
        "id": request_id,
        "answer": result.get("answer", ""),
        "sources": result.get("sources", []),
        "usage": result.get("usage", {"prompt_tokens": 0, "completion_tokens": 0}),
        "latency_ms": round(latency_ms, 1),
        "mode": result.get("mode"),
        "adapter": result.get("adapter"),
        "finish_reason": result.get("finish_reason"),
        "endpoint": grant.slug,
        "version": grant.version_number,
        "timings": result.get("timings"),  # the worker's retrieval / generation time and batch size
    }


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _stream_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass events on as they come
    return response


# --- the shared flow -------------------------------------------------------------------------------

Renderer = Callable[[dict[str, Any]], list[bytes]]


async def _relay(
    exchange: Exchange,
    grant: Grant,
    *,
    route: str,
    render: Renderer,
    render_error: Callable[[AccessError], bytes],
) -> AsyncIterator[bytes]:
    """The body of a streamed answer; logs the request when it ends, however it ends."""
    status, error, result = 200, "", None
    try:
        async for event in exchange.events():
            if event.get("type") == "done":
                result = event
            for chunk in render(event):
                yield chunk
    except AccessError as exc:
        status, error = exc.status, exc.message
        yield render_error(exc)
    except (asyncio.CancelledError, GeneratorExit):
        status, error = CLIENT_GONE, "the client disconnected"
        raise
    finally:
        await exchange.cancel()  # the worker stops if the answer was not finished
        await _log(
            grant,
            route=route,
            request_id=exchange.ask.request_id,
            status=status,
            latency_ms=exchange.elapsed_ms,
            result=result,
            error=error,
            question=exchange.ask.query,
        )


async def _answer(exchange: Exchange, grant: Grant, *, route: str) -> dict[str, Any]:
    """Wait for the whole answer; a client that leaves cancels the worker's generation."""
    try:
        result = await exchange.answer()
    except (asyncio.CancelledError, GeneratorExit):
        await exchange.cancel()
        await _log(
            grant,
            route=route,
            request_id=exchange.ask.request_id,
            status=CLIENT_GONE,
            latency_ms=exchange.elapsed_ms,
            error="the client disconnected",
        )
        raise
    return result


# --- /api/v1/endpoints/{slug}/query ----------------------------------------------------------------


async def query(
    request: HttpRequest, slug: str, *, route: str = "query", grant: Grant | None = None
) -> HttpResponse:
    started = time.monotonic()
    ask: Ask | None = None
    authorization = request.headers.get("Authorization")

    def admit(known: Grant | None) -> tuple[Grant, Exchange]:
        # One thread hop for the key check, the validation and queueing the task.
        admitted = known or access.authorize_key(authorization=authorization, slug=slug)
        try:
            exchange = Exchange(admitted, parse_query(_json(request), admitted))
            exchange.send()
        except AccessError as error:
            error.endpoint = admitted
            raise
        return admitted, exchange

    marks = [started]
    try:
        grant, exchange = await db(admit)(grant)
        ask = exchange.ask
        marks.append(time.monotonic())
        await exchange.accepted()
        marks.append(time.monotonic())
        if ask.stream:
            return _stream_response(
                _relay(
                    exchange,
                    grant,
                    route=route,
                    render=_query_event(exchange, grant),
                    render_error=lambda e: sse({"type": "error", "status": e.status, "detail": e.message}),
                )
            )
        result = await _answer(exchange, grant, route=route)
        marks.append(time.monotonic())
    except AccessError as error:
        grant = grant or error.endpoint
        await _log(
            grant,
            route=route,
            request_id=ask.request_id if ask else "",
            status=error.status,
            latency_ms=(time.monotonic() - started) * 1000,
            error=error.message,
        )
        return rest_error(error)
    latency = (time.monotonic() - started) * 1000
    response = JsonResponse(query_body(result, request_id=ask.request_id, latency_ms=latency, grant=grant))
    response["Server-Timing"] = server_timing(marks, result)
    return _log_after_sending(
        response,
        grant,
        route=route,
        request_id=ask.request_id,
        status=200,
        latency_ms=latency,
        result=result,
        question=ask.query,
    )


def server_timing(marks: list[float], result: dict[str, Any]) -> str:
    """Where the time went (browsers' dev tools show it): admitting the request (key, limits,
    queueing), waiting for a worker to take it, the answer (of which the worker computed
    ``compute``)."""
    names = ("admit", "accept", "answer")
    parts = [f"{name};dur={(b - a) * 1000:.1f}" for name, a, b in zip(names, marks, marks[1:], strict=False)]
    timings = result.get("timings") or {}
    compute = float(timings.get("retrieval_ms", 0)) + float(timings.get("generation_ms", 0))
    return ", ".join([*parts, f"compute;dur={compute:.1f}"])


def _query_event(exchange: Exchange, grant: Grant) -> Renderer:
    def render(event: dict[str, Any]) -> list[bytes]:
        if event.get("type") == "delta":
            return [sse({"type": "delta", "text": event.get("text", "")})]
        body = query_body(
            event, request_id=exchange.ask.request_id, latency_ms=exchange.elapsed_ms, grant=grant
        )
        return [sse({"type": "done", **body}), sse("[DONE]")]

    return render


# --- /v1/chat/completions -------------------------------------------------------------------------


async def chat_completions(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    grant: Grant | None = None
    ask: Ask | None = None
    authorization = request.headers.get("Authorization")

    def admit() -> tuple[Grant, Exchange, ChatIn]:
        # One thread hop for the key check, the validation and queueing the task.
        data = _json(request)
        model = data.get("model") if isinstance(data, dict) else None
        admitted = access.authorize_key(
            authorization=authorization, slug=model if isinstance(model, str) else ""
        )
        try:
            if not isinstance(data, dict):
                raise AccessError(422, "body: send a JSON object.", field="body")
            parsed, body = parse_chat(data, admitted)
            exchange = Exchange(admitted, parsed)
            exchange.send()
        except AccessError as error:
            error.endpoint = admitted
            raise
        return admitted, exchange, body

    try:
        grant, exchange, body = await db(admit)()
        ask = exchange.ask
        await exchange.accepted()
        if ask.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return _stream_response(
                _relay(
                    exchange,
                    grant,
                    route="chat",
                    render=_chat_chunks(exchange, grant, include_usage),
                    render_error=lambda e: sse(openai_error_body(e)),
                )
            )
        result = await _answer(exchange, grant, route="chat")
    except AccessError as error:
        grant = grant or error.endpoint
        await _log(
            grant,
            route="chat",
            request_id=ask.request_id if ask else "",
            status=error.status,
            latency_ms=(time.monotonic() - started) * 1000,
            error=error.message,
        )
        return openai_error(error)
    latency = (time.monotonic() - started) * 1000
    response = JsonResponse(_completion(result, ask=ask, grant=grant, latency_ms=latency))
    return _log_after_sending(
        response,
        grant,
        route="chat",
        request_id=ask.request_id,
        status=200,
        latency_ms=latency,
        result=result,
        question=ask.query,
    )


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _usage(result: dict[str, Any]) -> dict[str, int]:
    usage = result.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(result: dict[str, Any], *, ask: Ask, grant: Grant, latency_ms: float) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{ask.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": grant.slug,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.get("answer", "")},
                "finish_reason": _finish(result.get("finish_reason")),
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
        # Extensions (the OpenAI client keeps unknown fields): what the answer is based on.
        "sources": result.get("sources", []),
        "latency_ms": round(latency_ms, 1),
        "adapter": result.get("adapter"),
    }


def _chat_chunks(exchange: Exchange, grant: Grant, include_usage: bool) -> Renderer:
    base = {
        "id": f"chatcmpl-{exchange.ask.request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": grant.slug,
    }
    state = {"first": True}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse(
            {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                **extra,
            }
        )

    def render(event: dict[str, Any]) -> list[bytes]:
        out = []
        if state["first"]:
            state["first"] = False
            out.append(chunk({"role": "assistant", "content": ""}))
        if event.get("type") == "delta":
            out.append(chunk({"content": event.get("text", "")}))
            return out
        out.append(chunk({}, _finish(event.get("finish_reason")), sources=event.get("sources", [])))
        if include_usage:
            out.append(sse({**base, "choices": [], "usage": _usage(event)}))
        out.append(sse("[DONE]"))
        return out

    return render


# --- /v1/models -------------------------------------------------------------------------------------


async def models(request: HttpRequest, model: str | None = None) -> HttpResponse:
    try:
        grants = await db(access.keys_models)(authorization=request.headers.get("Authorization"))
    except AccessError as error:
        return openai_error(error)
    items = [{"id": g.slug, "object": "model", "created": g.created, "owned_by": "llmops"} for g in grants]
    if model is None:
        return JsonResponse({"object": "list", "data": items})
    found = next((item for item in items if item["id"] == model), None)
    if found is None:
        return openai_error(
            AccessError(404, f"No published endpoint “{model[:60]}” for this key.", code="model_not_found")
        )
    return JsonResponse(found)


# --- the playground (signed-in members, session + CSRF) ---------------------------------------------


async def playground(request: HttpRequest, slug: str) -> HttpResponse:
    user = await request.auser()
    try:
        grant = await db(access.authorize_user)(user=user, slug=slug)
    except AccessError as error:
        return rest_error(error)
    return await query(request, slug, route="playground", grant=grant)
