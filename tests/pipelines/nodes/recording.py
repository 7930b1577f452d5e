"""A real NodeContext for node tests outside the engine: it records what the node reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.context import NodeCancelled, NodeFailure


class RecordingContext:
    def __init__(
        self,
        workdir: Path,
        *,
        resources: dict[str, Callable[[Any], Any]] | None = None,
        device: str = "cpu",
        cancel_after_progress: int | None = None,
    ):
        self.node_id, self.run_id, self.workspace_id = "node", 1, 1
        self.workdir, self.device = Path(workdir), device
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.resources = resources or {}
        self.events: list[dict[str, Any]] = []
        self.logs: list[tuple[str, str]] = []
        self.metrics: list[tuple[str, float, int | None]] = []
        self.cancel_after_progress = cancel_after_progress

    def progress(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        self.events.append({"done": done, "total": total, "message": message, **metrics})

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.metrics.append((name, value, step))

    def cancelled(self) -> bool:
        return self.cancel_after_progress is not None and len(self.events) >= self.cancel_after_progress

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise NodeCancelled()

    def resource(self, kind: str, ref: Any) -> Any:
        if kind not in self.resources:
            raise NodeFailure(f"Unknown resource kind {kind!r}")
        return self.resources[kind](ref)

    @property
    def messages(self) -> list[str]:
        return [e["message"] for e in self.events]
