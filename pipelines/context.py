"""What a node implementation receives and returns. No Django, no Celery here.

A node implementation is ``run(ctx: NodeContext, inputs: dict, params: BaseModel) -> dict``:

- ``inputs`` maps each input port name to an ``ArtifactRef`` (or a list of them for a port
  with ``multiple=True``; a missing optional port is absent from the dict);
- it returns a dict mapping each output port name to an ``ArtifactOut``: files it wrote under
  ``ctx.workdir`` plus JSON metadata. The engine stores them through its storage layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipelines.types import ArtifactType


@dataclass(frozen=True)
class ArtifactRef:
    """An input artifact, already materialised on local disk for the node to read."""

    type: ArtifactType
    path: Path  # a file or folder on local disk
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # content key of the artifact (stable across re-runs with the same inputs)
    id: int | None = None


@dataclass
class ArtifactOut:
    """An output artifact: a file or folder under ``ctx.workdir`` plus JSON-safe metadata."""

    type: ArtifactType
    path: Path | None = None  # None for metadata-only artifacts (e.g. a Report or an Endpoint)
    metadata: dict[str, Any] = field(default_factory=dict)


class NodeCancelled(Exception):
    """Raised by ``ctx.check_cancelled()``; the engine marks the node cancelled, not failed."""


class NodeFailure(Exception):
    """A failure with a message meant for the user (what went wrong and what to change)."""


class NodeContext(Protocol):
    node_id: str
    run_id: int
    workdir: Path  # an empty folder for this node's outputs
    device: str  # "cpu", "cuda", "cuda:0" ...
    workspace_id: int

    def progress(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        """Report progress; throttled by the engine to a few events per second per node.

        ``metrics`` (loss, lr, tokens_per_s, ...) are stored and charted on the run page.
        """

    def log(self, message: str, level: str = "info") -> None: ...

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """A point of a metric series (e.g. training loss); never throttled away."""

    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None:
        """Raise NodeCancelled if the user cancelled the run."""

    def resource(self, kind: str, ref: Any) -> Any:
        """Platform data a source node needs but must not fetch through Django, resolved by the
        engine within the run's workspace: ``ctx.resource("collection", 5)`` gives the files of
        document collection 5, ``ctx.resource("dataset", 3)`` a dataset file, ``ctx.resource(
        "model", "demo")`` a model folder. Unknown or foreign refs raise NodeFailure."""
