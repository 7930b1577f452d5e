"""The NodeContext a node implementation receives on a worker (pipelines.context.NodeContext).

Progress is throttled here, per node, to one event per LLMOPS_PROGRESS_INTERVAL_S; a dropped
progress call is kept and sent by the heartbeat thread if nothing newer comes, so the bar
never freezes on a stale value. Metrics passed with a dropped progress call go out as a
``metric`` event: metric, log and state events are never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from gpu_worker.resources import resolve
from llmops.runs import engine
from llmops.runs.models import NodeRun
from pipelines.context import NodeCancelled

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.5  # ctx.cancelled() asks the database at most this often


def _fraction(done: float, total: float | None) -> float | None:
    if total:
        return max(0.0, min(1.0, float(done) / float(total)))
    if total is None and 0.0 <= float(done) <= 1.0:
        return float(done)
    return None


def _json_number(value: Any) -> Any:
    """Metrics arrive as numpy/torch scalars too; the event store wants plain JSON."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class WorkerContext:
    def __init__(self, *, node: NodeRun, workdir: Path, device: str):
        self.node_id = node.node_id
        self.run_id = node.run_id
        self.workdir = workdir
        self.device = device
        self.workspace_id = node.run.workspace_id
        self._node = node
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._interval = float(settings.LLMOPS_PROGRESS_INTERVAL_S)
        # The "started" event just said where the node is: the first progress waits one interval
        # too, so a node done in less never stops to write one (its "succeeded" says 100%).
        self._last_sent = self._started
        self._pending: dict[str, Any] | None = None
        self._cancelled = False
        self._cancel_seen_at: float | None = None
        self._last_check = time.monotonic()

    # --- NodeContext -----------------------------------------------------------------------

    def progress(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        fraction = _fraction(done, total)
        if not message and total:
            message = f"{done:g}/{total:g}"
        clean = {k: _json_number(v) for k, v in metrics.items()}
        update = {"progress": fraction, "message": str(message), "metrics": clean}
        with self._lock:
            now = time.monotonic()
            if now - self._last_sent < self._interval:
                self._pending = update
                send_metrics = bool(clean)
            else:
                self._pending, send_metrics = None, False
                self._send(update, now)
                return
        if send_metrics:
            engine.node_note(node=self._node, type="metric", metrics=clean)

    def log(self, message: str, level: str = "info") -> None:
        level = level if level in ("debug", "info", "warning", "error") else "info"
        engine.node_note(node=self._node, type="log", level=level, message=str(message)[:4000])

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        engine.node_note(
            node=self._node, type="metric", metrics={str(name): _json_number(value), "step": step}
        )

    def cancelled(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_check >= CANCEL_CHECK_S:
            self._last_check = now
            if not engine.node_still_mine(node=self._node):
                self.mark_cancelled()
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise NodeCancelled("the run was cancelled")

    def resource(self, kind: str, ref: Any) -> Any:
        return resolve(kind, ref, workspace_id=self.workspace_id)

    # --- engine side -------------------------------------------------------------------------

    def mark_cancelled(self) -> None:
        if not self._cancelled:
            self._cancelled, self._cancel_seen_at = True, time.monotonic()

    @property
    def cancelled_for_s(self) -> float:
        return 0.0 if self._cancel_seen_at is None else time.monotonic() - self._cancel_seen_at

    def flush_progress(self) -> None:
        """Send a progress update the throttle held back (called by the heartbeat thread)."""
        with self._lock:
            now = time.monotonic()
            if self._pending is not None and now - self._last_sent >= self._interval:
                update, self._pending = self._pending, None
                self._send(update, now)

    def drop_pending_progress(self) -> None:
        """The node is done: a held-back progress value is superseded by its final event."""
        with self._lock:
            self._pending = None

    def _send(self, update: dict[str, Any], now: float) -> None:
        fraction = update["progress"]
        elapsed = now - self._started
        eta = round(elapsed * (1 - fraction) / fraction, 1) if fraction and fraction > 0 else None
        self._last_sent = now
        if not engine.node_progress(
            node=self._node,
            progress=fraction,
            message=update["message"],
            eta_s=eta,
            metrics=update["metrics"] or None,
        ):
            self.mark_cancelled()
