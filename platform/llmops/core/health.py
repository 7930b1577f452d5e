"""Health of every part the platform needs, each probed with a short timeout."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection

from llmops.config.celery import celery_client


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def _check_broker() -> dict:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS.client_url,
        socket_timeout=settings.LLMOPS_HEALTH_TIMEOUT,
        socket_connect_timeout=settings.LLMOPS_HEALTH_TIMEOUT,
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "url": settings.REDIS.describe()}


def _check_channel_layer() -> dict:
    from channels.layers import get_channel_layer

    async def roundtrip() -> bool:
        layer = get_channel_layer()
        name = await layer.new_channel()
        await layer.send(name, {"type": "health.ping"})
        message = await asyncio.wait_for(layer.receive(name), settings.LLMOPS_HEALTH_TIMEOUT)
        return message.get("type") == "health.ping"

    return {"ok": async_to_sync(roundtrip)()}


def workers_by_queue(timeout: float | None = None) -> dict[str, list[str]]:
    """Worker host names answering on each queue (a broadcast with a short reply window)."""
    replies = celery_client().control.inspect(
        timeout=timeout or settings.LLMOPS_HEALTH_TIMEOUT
    ).active_queues() or {}
    found: dict[str, list[str]] = {q: [] for q in settings.LLMOPS_QUEUES}
    for worker, queues in replies.items():
        for queue in queues:
            found.setdefault(queue["name"], []).append(worker)
    return found


def _check_workers() -> dict:
    found = workers_by_queue()
    queues = {q: {"ok": bool(found.get(q)), "workers": sorted(found.get(q, []))}
              for q in settings.LLMOPS_QUEUES}
    return {"ok": all(q["ok"] for q in queues.values()), "queues": queues}


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
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def health_report() -> dict:
    """Run all checks in parallel; a check that overruns its budget is reported down."""
    budget = settings.LLMOPS_HEALTH_TIMEOUT + 1.0
    pool = ThreadPoolExecutor(max_workers=len(CHECKS))
    futures = {name: pool.submit(_run, check) for name, check in CHECKS.items()}
    report: dict[str, dict] = {}
    for name, future in futures.items():
        try:
            report[name] = future.result(timeout=budget)
        except FutureTimeout:
            report[name] = {"ok": False, "error": f"no answer within {budget:.1f}s"}
    pool.shutdown(wait=False, cancel_futures=True)
    return {"ok": all(r["ok"] for r in report.values()), "checks": report}
