"""Health of every part the platform needs, each probed with a short timeout.

``health_report()`` answers within about ``LLMOPS_HEALTH_TIMEOUT + 1`` seconds even when a
part hangs: the checks run in parallel threads and one that overruns its budget is reported
down. Every network call also carries its own timeout, so an overrunning thread ends soon
after instead of piling up behind a dead server.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection

from llmops.config.celery import celery_client


def _timeout() -> float:
    return float(settings.LLMOPS_HEALTH_TIMEOUT)


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    finally:
        # This runs in a short-lived thread: its connection would otherwise leak.
        connection.close()


def _check_broker() -> dict:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS.client_url, socket_timeout=_timeout(), socket_connect_timeout=_timeout()
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "url": settings.REDIS.describe()}


def _check_channel_layer() -> dict:
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    async def roundtrip() -> bool:
        # A private layer instance: the shared one is already receiving in the server's event
        # loop (every consumer listens on it), and channels-redis refuses a second loop.
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        try:
            name = await layer.new_channel()
            await layer.send(name, {"type": "health.ping"})
            message = await layer.receive(name)
            return message.get("type") == "health.ping"
        finally:
            close = getattr(layer, "close_pools", None)
            if close is not None:
                await close()

    async def bounded() -> bool:
        # The whole round trip, connecting included, so a silent server cannot hold it.
        return await asyncio.wait_for(roundtrip(), _timeout())

    return {"ok": async_to_sync(bounded)()}


def workers_by_queue(timeout: float | None = None) -> dict[str, list[str]]:
    """Worker names answering on each queue (a broadcast with a short reply window).

    Raises when the broker cannot be reached: one quick connection attempt, not Celery's
    default of retrying for minutes.
    """
    app = celery_client()
    window = timeout or _timeout()
    # Socket timeouts too: a server that accepts but never answers would otherwise hold this
    # thread forever (kombu's default), one more stuck thread for every /healthz call.
    socket_timeout = window + 2.0  # above the transport's 1 s BRPOP poll while collecting replies
    options = {"socket_timeout": socket_timeout, "socket_connect_timeout": window}
    with app.connection_for_write(transport_options=options, connect_timeout=window) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=window)
        replies = app.control.inspect(timeout=window, connection=conn).active_queues() or {}
    found: dict[str, list[str]] = {q: [] for q in settings.LLMOPS_QUEUES}
    for worker, queues in replies.items():
        for queue in queues:
            found.setdefault(queue["name"], []).append(worker)
    return found


def _check_workers() -> dict:
    # The reply window is most of the budget; replies arrive in milliseconds when workers are up.
    found = workers_by_queue(timeout=max(0.5, _timeout() - 0.5))
    queues = {
        q: {"ok": bool(found.get(q)), "workers": sorted(found.get(q, []))} for q in settings.LLMOPS_QUEUES
    }
    missing = [q for q, state in queues.items() if not state["ok"]]
    result: dict = {"ok": not missing, "queues": queues, "missing": missing}
    if missing:
        result["error"] = f"no worker answering on queue {', '.join(missing)}"
    return result


CHECKS = {
    "database": _check_database,
    "broker": _check_broker,
    "channel_layer": _check_channel_layer,
    "workers": _check_workers,
}


def _run(check) -> dict:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - a health probe reports every failure, never raises
        detail = str(exc) or "no answer in time"  # asyncio's TimeoutError has no message
        result = {"ok": False, "error": f"{type(exc).__name__}: {detail}"[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def health_report() -> dict:
    """Run all checks in parallel; a check that overruns its budget is reported down."""
    budget = _timeout() + 1.0
    deadline = time.monotonic() + budget
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health")
    futures = {name: pool.submit(_run, check) for name, check in CHECKS.items()}
    report: dict[str, dict] = {}
    for name, future in futures.items():
        try:
            report[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            report[name] = {"ok": False, "error": f"no answer within {budget:.1f}s"}
    pool.shutdown(wait=False, cancel_futures=True)
    if not report["workers"]["ok"] and "queues" not in report["workers"]:
        # Workers could not even be asked: every queue is without a known worker.
        report["workers"]["missing"] = list(settings.LLMOPS_QUEUES)
    down = [name for name, result in report.items() if not result["ok"]]
    return {"ok": not down, "down": down, "checks": report}
