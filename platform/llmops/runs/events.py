"""The one way run events are made: stored with the run's next sequence number, then
published to the run's channel group once the transaction commits.

Sequence numbers come from ``UPDATE run SET last_seq = last_seq + 1 ... RETURNING`` inside
the event's transaction. The UPDATE row-locks the run (PostgreSQL) or the database (SQLite
in IMMEDIATE mode), so event N+1 can only be numbered after event N committed: numbers have
no gaps, and by the time a consumer hears of N+1, every earlier event is readable. Consumers
rely on that to fill a gap from the database when publishes arrive out of order.

Publishing goes through one background thread per process with its own event loop, in
order, so the caller (a node in the middle of training, a web request) never waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from llmops.runs.models import PipelineRun, RunEvent

log = logging.getLogger(__name__)

# Types the consumer and the UIs know; "run" carries the run's own status (node is None).
EVENT_TYPES = frozenset(
    {
        "queued",
        "started",
        "progress",
        "log",
        "metric",
        "succeeded",
        "failed",
        "cancelled",
        "skipped",
        "cached",
        "run",
    }
)


def group_name(run_id: int) -> str:
    return f"run-{run_id}"


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def event_dict(event: RunEvent) -> dict[str, Any]:
    """The wire format of EVENTS.md: seq, type, node, ts plus the payload's fields."""
    data = {"seq": event.seq, "type": event.type, "node": event.node_id, "ts": iso(event.created_at)}
    data.update(event.payload)
    return data


def _next_seq(run_id: int, count: int = 1) -> int:
    """Reserve ``count`` sequence numbers; returns the last one."""
    table = connection.ops.quote_name(PipelineRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",  # noqa: S608
            [count, run_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise PipelineRun.DoesNotExist(f"run {run_id} does not exist")
    return int(row[0])


_INSERT_FIELDS = ("run", "seq", "type", "node_id", "payload", "created_at")
_INSERT_BATCH = 500


def _insert(events: list[RunEvent]) -> None:
    """INSERT events in one statement. Events are the engine's most frequent write (several
    per node): this skips Model.save()'s machinery (signals, the compiler) that would cost
    several times the statement itself; each field still goes through its own conversion."""
    meta = RunEvent._meta
    columns = [meta.get_field(name) for name in _INSERT_FIELDS]
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(columns))})"
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in columns)}) VALUES "  # noqa: S608
    with connection.cursor() as cursor:
        for start in range(0, len(events), _INSERT_BATCH):  # under every database's parameter limit
            batch = events[start : start + _INSERT_BATCH]
            values = [f.get_db_prep_save(getattr(e, f.attname), connection) for e in batch for f in columns]
            cursor.execute(head + ", ".join([row] * len(batch)), values)


def lock_run(run_id: int) -> None:
    """Take the run's row lock for the rest of the transaction (the same lock _next_seq takes).

    Every multi-step write to a run takes this lock first, so writers never deadlock on each
    other's rows and the scheduler sees the other writers' committed work.
    """
    if connection.vendor == "sqlite":
        return  # BEGIN IMMEDIATE (settings) already holds the database's single write lock
    list(PipelineRun.objects.select_for_update().filter(id=run_id).values_list("id", flat=True))


_batch = threading.local()


@contextlib.contextmanager
def batched():
    """Events emitted inside the block (by this thread) are stored when it ends, in order, with
    one sequence update and one INSERT per run instead of one each. Use it inside the
    transaction that makes them (a finishing node: its "succeeded", its successor's "started")."""
    if getattr(_batch, "events", None) is not None:  # already batching: the outer block stores
        yield
        return
    _batch.events = []
    try:
        yield
        events, _batch.events = _batch.events, None
    finally:
        _batch.events = None
    runs: dict[int, list[dict[str, Any]]] = {}
    for run_id, event in events:
        runs.setdefault(run_id, []).append(event)
    for run_id, items in runs.items():
        emit_many(run_id=run_id, events=items)


def emit(*, run_id: int, type: str, node_id: str | None = None, **payload: Any) -> None:  # noqa: A002
    """Store one event and publish it after commit. ``payload`` None values are dropped."""
    event = {"type": type, "node": node_id, **payload}
    pending = getattr(_batch, "events", None)
    if pending is not None:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        pending.append((run_id, event))
        return
    emit_many(run_id=run_id, events=[event])


def emit_many(*, run_id: int, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store several events of one run in order (each ``{"type", "node", **payload}``) with one
    sequence update and one INSERT, then publish them after commit."""
    for event in events:
        if event["type"] not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event['type']!r}")
    # No savepoint when nested: the events belong to the caller's transaction, whole or not at all.
    with transaction.atomic(savepoint=False):
        last = _next_seq(run_id, len(events))
        now = timezone.now()
        rows = [
            RunEvent(
                run_id=run_id,
                seq=last - len(events) + 1 + i,
                type=event["type"],
                node_id=event.get("node"),
                payload={k: v for k, v in event.items() if k not in ("type", "node") and v is not None},
                created_at=now,
            )
            for i, event in enumerate(events)
        ]
        _insert(rows)
        if post_save.has_listeners(RunEvent):  # the INSERT skipped save(): keep its signal
            for row in rows:
                post_save.send(
                    sender=RunEvent,
                    instance=row,
                    created=True,
                    update_fields=None,
                    raw=False,
                    using=connection.alias,
                )
        data = [event_dict(row) for row in rows]
        group = group_name(run_id)
        for item in data:
            transaction.on_commit(functools.partial(publisher.publish, group, item), robust=True)
    return data


class _Publisher:
    """Sends channel-layer group messages from a background thread, in submission order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._pid = 0

    def publish(self, group: str, event: dict[str, Any]) -> None:
        loop = self._ensure_started()
        with self._lock:
            self._pending += 1
        loop.call_soon_threadsafe(self._queue.put_nowait, (group, event))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted event was handed to the channel layer (CLI exit, tests)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child (Celery prefork) inherits the attributes but not the thread.
            if self._loop is None or self._pid != os.getpid():
                ready = threading.Event()
                self._pid, self._pending = os.getpid(), 0
                threading.Thread(target=self._serve, args=(ready,), name="run-events", daemon=True).start()
                ready.wait()
            return self._loop

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop, self._queue = loop, asyncio.Queue()
        loop.call_soon(ready.set)
        loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        while True:
            # Whatever queued up meanwhile goes out together: one message per run (a finishing
            # node's transaction commits its "succeeded" and its successor's "started" at once).
            group, event = await self._queue.get()
            batches, count = {group: [event]}, 1
            while not self._queue.empty():
                group, event = self._queue.get_nowait()
                batches.setdefault(group, []).append(event)
                count += 1
            for group, events in batches.items():
                try:
                    await layer.group_send(group, {"type": "run.events", "events": events})
                except Exception:  # noqa: BLE001 - stored events are replayed; a lost publish is not fatal
                    log.warning(
                        "could not publish events %s of %s", events[0].get("seq"), group, exc_info=True
                    )
            with self._idle:
                self._pending -= count
                self._idle.notify_all()


publisher = _Publisher()
