"""``llmops.serve.query`` on the ``serve`` queue: answer one endpoint request.

The task only hands the request to this process's ``ServeEngine`` (pipelines.serving.engine)
and returns; the engine's loop thread answers it and pushes the answer to the request's Redis
list (llmops.endpoints.wire). That is what makes batching possible with Celery's prefork pool:
a child process takes tasks as fast as they come (each is a queue put), while its engine
decodes the requests for the same warm service together, and the ones that arrive meanwhile
join the running batch between two decode steps (continuous batching). The engine's queue is
bounded, so an overloaded worker stops taking tasks (they wait in the broker, then expire and
the web answers 503) instead of hoarding them.

Services are cached per process by the service artifact's content key (LRU, bounded by
LLMOPS_SERVE_CACHE_SIZE). Inference is never retried: acks_late is off, and a request lost
with its worker is answered 503/504 by the web's bounded waits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from gpu_worker.celery_app import app
from llmops.config.broker import redis_client
from llmops.endpoints import wire

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.2  # how often a generating request asks Redis whether its client left

_engine = None
_engine_pid = 0
_engine_lock = threading.Lock()


class RedisSink:
    """Pushes a request's events to its reply list; notices a cancel by its client."""

    def __init__(self, request_id: str):
        self.reply = wire.reply_key(request_id)
        self.cancel_key = wire.cancel_key(request_id)
        self._cancelled = False
        self._checked = 0.0

    def _push(self, event: dict[str, Any]) -> None:
        pipe = redis_client().pipeline(transaction=False)
        pipe.rpush(self.reply, wire.encode(event))
        pipe.expire(self.reply, wire.REPLY_TTL_S)
        pipe.execute()

    def accepted(self) -> None:
        self._push({"type": "accepted", "worker": os.getpid()})

    def delta(self, text: str) -> None:
        if text:
            self._push({"type": "delta", "text": text})

    def done(self, result: dict[str, Any]) -> None:
        self._push({"type": "done", **result})

    def error(self, status: int, message: str) -> None:
        self._push({"type": "error", "status": int(status), "message": str(message)[:2000]})

    def cancelled(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._checked >= CANCEL_CHECK_S:
            self._checked = now
            self._cancelled = bool(redis_client().exists(self.cancel_key))
        return self._cancelled


def _device() -> str:
    from gpu_worker.devices import device_info

    return device_info(check_torch=True).device


def _resolve_model(pin) -> Path:
    """The pinned model on this worker: its artifact from storage when it is still there."""
    from llmops.runs.models import Artifact
    from llmops.runs.storage import materialise
    from pipelines.serving.service import default_model_resolver

    if pin.artifact_id:
        artifact = Artifact.objects.filter(pk=pin.artifact_id).first()
        path = materialise(artifact) if artifact is not None else None
        if path is not None and path.exists():
            return default_model_resolver(pin.model_copy(update={"path": str(path)}))
    return default_model_resolver(pin)


def _load_service(key: str, ref: dict[str, Any]):
    """Loader for the engine's cache: the service artifact (by id and key) from storage."""
    from django.db import close_old_connections

    from llmops.runs.models import Artifact
    from llmops.runs.storage import materialise
    from pipelines.serving.service import RagService

    close_old_connections()
    artifact = Artifact.objects.filter(
        pk=ref["artifact_id"], key=key, workspace_id=ref["workspace_id"]
    ).first()
    if artifact is None:
        raise FileNotFoundError("the published service artifact no longer exists; publish a run again")
    folder = materialise(artifact)
    service = RagService.load(folder, device=_device(), resolve_model=_resolve_model)
    service.warm()
    log.info("serve: loaded service %s (artifact %s)", key[:12], artifact.pk)
    return service


def engine():
    """This process's engine, started on first use (after Celery forked the process)."""
    global _engine, _engine_pid
    with _engine_lock:
        if _engine is None or _engine_pid != os.getpid():
            from pipelines.serving.engine import ServeEngine

            _engine = ServeEngine(
                _load_service,
                cache_size=settings.LLMOPS_SERVE_CACHE_SIZE,
                max_batch=settings.LLMOPS_SERVE_MAX_BATCH,
            )
            _engine_pid = os.getpid()
        return _engine


def _hosted(payload: dict[str, Any]):
    """The endpoint's hosted model, key decrypted here (it never travels through the broker)."""
    from llmops.endpoints.crypto import decrypt
    from llmops.endpoints.models import HostedProvider
    from pipelines.serving.protocol import HostedConfig

    provider = HostedProvider.objects.filter(
        pk=payload["provider_id"], workspace_id=payload["workspace_id"]
    ).first()
    if provider is None:
        return None
    return HostedConfig(
        base_url=provider.base_url,
        model=provider.model,
        api_key=decrypt(provider.api_key_encrypted),
        timeout_s=float(settings.LLMOPS_SERVE_TIMEOUT_S),
    )


def submit(payload: dict[str, Any]) -> str:
    """Validate the request, acknowledge it to the web, hand it to the engine."""
    from pipelines.serving.engine import EngineBusy, Job
    from pipelines.serving.protocol import ServeRequest

    sink = RedisSink(str(payload["request_id"]))
    if sink.cancelled():
        return "cancelled"  # the web gave up on it before we got here
    try:
        hosted = _hosted(payload) if payload.get("provider_id") else None
    except Exception as exc:  # noqa: BLE001 - e.g. an undecryptable key: that request's error
        sink.error(502, f"the hosted model is misconfigured: {exc}")
        return "error"
    request = ServeRequest(
        request_id=str(payload["request_id"]),
        query=str(payload["query"]),
        max_tokens=payload.get("max_tokens"),
        temperature=payload.get("temperature"),
        adapter=payload.get("adapter"),
        stream=bool(payload.get("stream")),
        hosted=hosted,
    )
    job = Job(
        service_key=str(payload["service_key"]),
        request=request,
        sink=sink,
        service_ref={"artifact_id": payload["service_artifact_id"], "workspace_id": payload["workspace_id"]},
    )
    sink.accepted()
    try:
        engine().submit(job)
    except EngineBusy as exc:
        sink.error(503, str(exc))
        return "busy"
    return "queued"


@app.task(name=wire.TASK_QUERY, acks_late=False, ignore_result=True)
def serve_query(payload: dict[str, Any]) -> str:
    return submit(payload)
