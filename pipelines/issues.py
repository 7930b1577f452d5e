"""A problem found in a graph, addressed to a node, a field and/or an edge (shown on the canvas)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pipelines.resources import DeviceProfile

Severity = Literal["error", "warning"]


@dataclass
class GraphIssue:
    code: str  # stable, machine-readable: "cycle", "type_mismatch", "missing_param", ...
    message: str  # plain language, says what to change
    node: str | None = None  # the node id it concerns
    field: str | None = None  # a params field or input port of that node ("r", "dataset")
    edge: int | None = None  # index in the graph's edges
    severity: Severity = "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckContext:
    """What a node kind's own static checks (``NodeSpec.check``) may take into account."""

    device: DeviceProfile | None = None
    allow_remote_code: bool = False  # an administrator allowed trust_remote_code for this workspace
