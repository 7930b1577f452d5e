"""The per-process serving engine: a bounded LRU cache of warm services and one loop thread
that batches whatever requests are waiting.

Batching without added latency: the loop takes the first waiting request and, in the same
breath, every other request already queued (up to ``max_batch``); requests for the same
service become one retrieval pass and one continuous batch on the model. An idle engine starts
a lone request at once (no collection window to wait out); under load, requests for the same
service that arrive while a batch runs join it between two decode steps (continuous
batching), and a request for another service makes the running batch stop taking newcomers
and drain, then goes next. One loop per process also means one model computes at a time,
which is what a CPU or a single GPU can do anyway.

Hosted generation (network-bound) runs on a small thread pool so a slow remote API never
holds up local batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipelines.serving.protocol import ServeRequest, Sink

log = logging.getLogger(__name__)


@dataclass
class Job:
    service_key: str
    service_ref: Any  # what the loader needs to find the service (e.g. an artifact id)
    request: ServeRequest
    sink: Sink
    enqueued: float = field(default_factory=time.monotonic)


class ServiceCache:
    """Loaded services by content key, least recently used evicted past ``size``."""

    def __init__(self, loader: Callable[[str, Any], Any], size: int = 2):
        self.loader, self.size = loader, max(1, size)
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0

    def get(self, key: str, ref: Any):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        service = self.loader(key, ref)
        with self.lock:
            self.loads += 1
            self.items[key] = service
            self.items.move_to_end(key)
            evicted = []
            while len(self.items) > self.size:
                evicted.append(self.items.popitem(last=False))
        if evicted:
            _release(evicted)
        return service

    def keys(self) -> list[str]:
        with self.lock:
            return list(self.items)


def _release(evicted: list) -> None:
    """Drop evicted services and give their memory back (GPU memory is not freed by GC alone)."""
    evicted.clear()
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is installed wherever models are served
        pass


# Newcomers join a running batch once they are this share of its rows, or once the oldest has
# waited this long (see _Admitter).
ADMIT_RATIO = 0.25
ADMIT_WAIT_S = 0.03


class EngineBusy(RuntimeError):
    """The engine's queue stayed full: the worker is overloaded."""


class ServeEngine:
    def __init__(
        self,
        loader: Callable[[str, Any], Any],
        *,
        cache_size: int = 2,
        max_batch: int = 16,
        queue_size: int = 256,
        hosted_threads: int = 8,
    ):
        self.cache = ServiceCache(loader, cache_size)
        self.max_batch = max(1, max_batch)
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self.pool = ThreadPoolExecutor(max_workers=hosted_threads, thread_name_prefix="serve-hosted")
        self.batches: list[int] = []  # sizes of the last batches and admissions (stats, tests)
        self._held: list[Job] = []  # taken off the queue for the next batch (loop thread only)
        self._thread = threading.Thread(target=self._loop, name="serve-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job, *, timeout: float = 5.0) -> None:
        try:
            self.queue.put(job, timeout=timeout)
        except queue.Full as exc:
            raise EngineBusy("the serve worker has too many requests waiting") from exc

    def _loop(self) -> None:
        while True:
            batch = self._held[: self.max_batch] or [self.queue.get()]
            del self._held[: len(batch)]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._run(batch)
            except Exception:  # noqa: BLE001 - the loop must survive anything a batch does
                log.exception("serve batch failed")
                for job in batch:
                    _safe_error(job.sink, 500, "the serve worker failed on this batch")

    def _run(self, batch: list[Job]) -> None:
        self.batches = (self.batches + [len(batch)])[-100:]
        groups: dict[str, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.service_key, []).append(job)
        last = list(groups)[-1]
        for key, jobs in groups.items():
            try:
                service = self.cache.get(key, jobs[0].service_ref)
            except Exception as exc:  # noqa: BLE001 - a broken service fails its requests only
                log.exception("loading service %s failed", key)
                for job in jobs:
                    _safe_error(job.sink, 500, f"the service could not be loaded: {exc}")
                continue
            # Only the last group may take in newcomers: the others' requests are already waiting.
            admit = _Admitter(self, key) if key == last else None
            try:
                service.answer_batch(
                    [(j.request, j.sink) for j in jobs],
                    hosted_pool=self.pool,
                    admit=admit,
                    max_rows=self.max_batch,
                )
            finally:
                if admit is not None and admit.pending:  # taken off the queue, never admitted
                    self._held[:0] = admit.pending


class _Admitter:
    """Requests for one service that arrive while its batch runs, for that batch to take in.

    Joining costs a retrieval pass and a prefill that stall every running row for that long, so
    newcomers are taken in a few at a time: once they are ``ADMIT_RATIO`` of the running rows,
    or once the oldest has waited ``ADMIT_WAIT_S`` (the trade text-generation-inference makes
    with its waiting-served ratio and max waiting tokens). The first request for another service
    is held for the next batch; from then on nothing more is taken off the queue, and what was
    is admitted at once, so the running batch drains and no service waits behind a busy one."""

    def __init__(self, engine: ServeEngine, key: str):
        self.engine, self.key = engine, key
        self.pending: list[Job] = []

    def __call__(self, room: int) -> list:
        engine = self.engine
        while not engine._held:
            try:
                job = engine.queue.get_nowait()
            except queue.Empty:
                break
            (self.pending if job.service_key == self.key else engine._held).append(job)
        if not self.pending or room <= 0:
            return []
        running = engine.max_batch - room
        waited = time.monotonic() - self.pending[0].enqueued
        if not engine._held and waited < ADMIT_WAIT_S and len(self.pending) < max(1, ADMIT_RATIO * running):
            return []
        taken, self.pending = self.pending[:room], self.pending[room:]
        engine.batches = (engine.batches + [len(taken)])[-100:]
        return [(j.request, j.sink) for j in taken]


def _safe_error(sink: Sink, status: int, message: str) -> None:
    try:
        sink.error(status, message)
    except Exception:  # noqa: BLE001 - reporting is best effort once things went wrong
        log.warning("could not report an error to a client", exc_info=True)
