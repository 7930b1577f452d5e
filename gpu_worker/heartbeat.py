"""The worker's own heartbeat: a thread in each of the worker's pool processes records the
worker (queues, device, memory, utilisation) every LLMOPS_HEARTBEAT_S for the Workers page,
and runs the reaper every LLMOPS_REAPER_INTERVAL_S, so lost nodes are recovered even where no
``celery beat`` runs (the beat task does the same; both are idempotent).

Why the pool processes and not the main process: the main process forks replacement children
at any moment (after a child was killed, for instance). A child forked while another thread
of its parent was inside an SQLite transaction inherits SQLite's in-process lock state and
sees "database is locked" forever. So the main process never opens the database; it only
records, before the pool starts, what the children need to know (name, queues).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import signals
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

log = logging.getLogger(__name__)

_beat: WorkerBeat | None = None


class WorkerBeat:
    def __init__(self, *, name: str, queues: list[str], concurrency: int, started_at=None):
        self.name, self.queues, self.concurrency = name, queues, concurrency
        self.started_at = started_at or timezone.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True)
        self._next_reap = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            from llmops.runs.services import worker_stopped

            worker_stopped(name=self.name)
        except Exception:  # noqa: BLE001 - shutting down: the page will show it stale anyway
            log.warning("could not record the stop of %s", self.name, exc_info=True)
        finally:
            connection.close()

    def _loop(self) -> None:
        try:
            while True:
                self.beat_once()
                if self._stop.wait(float(settings.LLMOPS_HEARTBEAT_S)):
                    return
        finally:
            connection.close()

    def beat_once(self) -> None:
        from gpu_worker.devices import device_info
        from llmops.runs.engine import reap
        from llmops.runs.services import worker_heartbeat

        try:
            info = device_info()
            worker_heartbeat(
                name=self.name,
                host=socket.gethostname(),
                pid=os.getppid(),
                queues=self.queues,
                concurrency=self.concurrency,
                device=info.label,
                device_name=info.name,
                memory_used=info.memory_used,
                memory_total=info.memory_total,
                utilization=info.utilization,
                started_at=self.started_at,
            )
            if time.monotonic() >= self._next_reap:
                self._next_reap = time.monotonic() + float(settings.LLMOPS_REAPER_INTERVAL_S)
                counts = reap()
                if any(counts.values()):
                    log.info("reaper: %s", counts)
        except Exception:  # noqa: BLE001 - a database hiccup must not stop the heartbeat
            log.warning("worker heartbeat failed", exc_info=True)
            close_old_connections()


_worker: dict = {}


@signals.worker_init.connect
def _remember_worker(sender=None, **kwargs) -> None:
    """In the main process, before the pool forks: what each child reports about its worker."""
    queues = getattr(sender.app.amqp.queues, "consume_from", None) or sender.app.amqp.queues
    _worker.update(
        name=sender.hostname,
        queues=sorted(queues),
        concurrency=int(sender.concurrency or 1),
        started_at=timezone.now(),
    )


@signals.worker_process_init.connect
def _start_beat(**kwargs) -> None:
    global _beat
    from llmops.config.celery import celery_client

    celery_client.cache_clear()  # a child must not share its parent's broker connections
    if _worker:
        _beat = WorkerBeat(**_worker)
        _beat.start()


@signals.worker_process_shutdown.connect
def _stop_beat(**kwargs) -> None:
    if _beat is not None:
        _beat.stop()
