"""A node kind's spec: everything the UI, the validator and the engine need, without the
implementation (which is imported lazily, only on workers)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from pipelines.types import ArtifactType

Queue = Literal["cpu", "gpu", "serve"]


@dataclass(frozen=True)
class Port:
    name: str
    type: ArtifactType
    label: str = ""
    required: bool = True
    multiple: bool = False  # accepts several edges (e.g. several LoRA adapters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": str(self.type), "label": self.label or self.name.title(),
            "required": self.required, "multiple": self.multiple,
        }


@dataclass(frozen=True)
class ResourceEstimate:
    """Memory a node needs on its device, in bytes, with a one-line explanation."""

    bytes: int
    explanation: str
    # The params field a user changes first when it does not fit (e.g. "method", "batch_size");
    # None when the remedy lies elsewhere (e.g. quantize the model upstream).
    field: str | None = None
    advice: str = ""  # what to change when it does not fit, in plain language


@dataclass(frozen=True)
class NodeSpec:
    kind: str  # stable name, e.g. "train.lora"
    label: str  # friendly name shown in the palette
    category: str  # palette group: Sources, Knowledge, Models, Training, Evaluation, Serving
    description: str  # one line under the label
    help: str  # a paragraph in the form's side panel
    icon: str  # a short glyph/emoji shown on the node
    queue: Queue
    params: type[BaseModel]
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    implementation: str = ""  # "pipelines.nodes.train_lora.run:run", imported only by workers
    version: int = 1  # bump when outputs change for the same params: invalidates the cache
    # estimate(params, input_meta, device) -> ResourceEstimate | None; input_meta maps an input
    # port to a list of `pipelines.resources.UpstreamMeta` (one per edge: the upstream node's
    # kind, params and static facts such as the model's size); device is a DeviceProfile or None.
    estimate: Callable[..., ResourceEstimate | None] | None = field(default=None, compare=False)
    # facts(params, input_meta) -> {output port: ModelFacts}: what is statically known about the
    # models this node outputs (size, precision), so nodes downstream can estimate memory.
    facts: Callable[..., dict[str, Any]] | None = field(default=None, compare=False)
    # check(params, input_meta, ctx: CheckContext) -> list[GraphIssue]: the kind's own static
    # checks across params and inputs (e.g. a sequence longer than the model's context); the
    # validator fills in the node id.
    check: Callable[..., list[Any]] | None = field(default=None, compare=False)

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Port | None:
        return next((p for p in self.outputs if p.name == name), None)

    def json_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def default_params(self) -> dict[str, Any]:
        """Defaults of the fields that have one; required fields (e.g. a collection id) are left out."""
        out: dict[str, Any] = {}
        for name, info in self.params.model_fields.items():
            if not info.is_required():
                value = info.get_default(call_default_factory=True)
                out[name] = value.value if hasattr(value, "value") else value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "label": self.label, "category": self.category,
            "description": self.description, "help": self.help, "icon": self.icon,
            "queue": self.queue, "version": self.version,
            "inputs": [p.to_dict() for p in self.inputs],
            "outputs": [p.to_dict() for p in self.outputs],
            "schema": self.json_schema(), "defaults": self.default_params(),
        }

    def load_implementation(self) -> Callable[..., dict]:
        """Import the node's run function. Only workers call this (heavy imports live there)."""
        module_name, _, attr = self.implementation.partition(":")
        if not module_name:
            raise LookupError(f"node kind {self.kind!r} has no implementation yet")
        return getattr(importlib.import_module(module_name), attr or "run")
