"""The async path of one request: hand it to a serve worker and relay the answer.

The web never computes an answer (it must not import torch). It sends ``llmops.serve.query``
to the ``serve`` queue and waits on a Redis list (see wire.py) with BLPOP, inside the event
loop, so a waiting request costs no thread. Every wait is bounded:

- no worker took the request within ``LLMOPS_SERVE_ACCEPT_TIMEOUT_S``: 503 + Retry-After
  (the task message also expires then, so a worker that comes back later drops it);
- no answer within ``LLMOPS_SERVE_TIMEOUT_S``: 504.

When the request ends early (the client disconnected, Django cancelled the view or the
stream) the cancel key is set, and the worker stops generating for it within a token or two.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from llmops.endpoints import wire
from llmops.endpoints.access import AccessError, Grant
from llmops.endpoints.dbthreads import db

RETRY_AFTER_S = 5
log = logging.getLogger(__name__)

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _redis():
    """One redis.asyncio client per event loop (a connection pool is bound to its loop)."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # No socket timeout: every BLPOP carries its own bounded timeout.
        client = aioredis.Redis.from_url(
            settings.REDIS.client_url, socket_timeout=None, socket_connect_timeout=5
        )
        _clients[loop] = client
    return client


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Ask:
    """One question for a serve worker."""

    query: str
    max_tokens: int | None = None
    temperature: float | None = None
    adapter: str | None = None
    stream: bool = False
    request_id: str = field(default_factory=new_request_id)


def _send(grant: Grant, ask: Ask, expires_s: float) -> None:
    from llmops.config.celery import send_task

    payload = {
        "request_id": ask.request_id,
        "workspace_id": grant.workspace_id,
        "endpoint_id": grant.endpoint_id,
        "service_artifact_id": grant.service_artifact_id,
        "service_key": grant.service_key,
        "provider_id": grant.provider_id,
        "query": ask.query,
        "max_tokens": ask.max_tokens,
        "temperature": ask.temperature,
        "adapter": ask.adapter,
        "stream": ask.stream,
    }
    send_task(
        wire.TASK_QUERY, kwargs={"payload": payload}, queue=wire.QUEUE, expires=expires_s, ignore_result=True
    )


class Exchange:
    """The conversation with the worker for one request: ``send()`` then ``accepted()`` (or
    ``start()`` for both) return once a worker took it (or raise 503); then iterate
    ``events()``: deltas, then ``done``."""

    def __init__(self, grant: Grant, ask: Ask):
        self.grant, self.ask = grant, ask
        self.finished = False
        self.result: dict[str, Any] | None = None
        self.started = time.monotonic()

    @property
    def reply(self) -> str:
        return wire.reply_key(self.ask.request_id)

    def send(self) -> None:
        """Queue the request (sync: call it from a thread, with the other database work)."""
        if not self.grant.service_artifact_id:
            raise AccessError(404, "This endpoint has no published version.")
        try:
            _send(self.grant, self.ask, float(settings.LLMOPS_SERVE_ACCEPT_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds when the broker is down
            log.warning("could not queue request %s", self.ask.request_id, exc_info=True)
            raise _unreachable() from exc

    async def accepted(self) -> None:
        """Return once a worker took the request; 503 when none did in time."""
        accept = float(settings.LLMOPS_SERVE_ACCEPT_TIMEOUT_S)
        event = await self._next(accept)
        if event is None:
            await self.cancel()
            raise AccessError(
                503,
                f"No serve worker answered within {accept:g} s; try again shortly.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
                code="no_worker",
            )
        if event.get("type") == "error":
            self.finished = True
            raise _error(event)

    async def start(self) -> None:
        await db(self.send)()
        await self.accepted()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        deadline = self.started + float(settings.LLMOPS_SERVE_TIMEOUT_S)
        while True:
            left = deadline - time.monotonic()
            event = await self._next(left) if left > 0 else None
            if event is None:
                await self.cancel()
                raise AccessError(
                    504,
                    f"The serve worker gave no answer within {settings.LLMOPS_SERVE_TIMEOUT_S:g} s.",
                    code="timeout",
                )
            kind = event.get("type")
            if kind == "error":
                self.finished = True
                raise _error(event)
            if kind == "done":
                self.finished, self.result = True, event
                yield event
                return
            if kind == "delta":
                yield event

    async def answer(self) -> dict[str, Any]:
        async for event in self.events():
            if event.get("type") == "done":
                return event
        raise AccessError(502, "The serve worker ended without an answer.")

    async def _next(self, timeout: float) -> dict[str, Any] | None:
        import redis.exceptions

        try:
            # BLPOP's timeout has a resolution of 0.01 s; 0 would mean "forever".
            popped = await _redis().blpop([self.reply], timeout=max(0.01, round(timeout, 2)))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise _unreachable() from exc
        return wire.decode(popped[1]) if popped else None

    async def cancel(self) -> None:
        """Tell the worker to stop (a no-op for a finished request)."""
        if self.finished:
            return
        self.finished = True
        try:
            await _redis().set(wire.cancel_key(self.ask.request_id), 1, ex=wire.CANCEL_TTL_S)
        except Exception:  # noqa: BLE001 - best effort: the worker's own limits still apply
            log.warning("could not cancel request %s", self.ask.request_id, exc_info=True)

    @property
    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000


def _unreachable() -> AccessError:
    return AccessError(
        503,
        "The queue that connects to the serve workers is unreachable; try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        code="broker_unreachable",
    )


def _error(event: dict[str, Any]) -> AccessError:
    status = int(event.get("status") or 500)
    message = str(event.get("message") or "The serve worker failed.")
    field_name = message.split(":", 1)[0] if status == 422 and ":" in message else None
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return AccessError(status, message, field=field_name, headers=headers)
