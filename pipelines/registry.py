"""The one explicit registry of node kinds.

The nine built-in kinds are listed below, in palette order. Extra kinds (test-only kinds,
plugins) come from the modules named in ``LLMOPS_EXTRA_NODE_MODULES`` (comma-separated),
imported at first use; importing such a module calls ``register(SPEC)``. Implementations
are never imported here: ``NodeSpec.load_implementation()`` does that, on workers only.
"""

from __future__ import annotations

import importlib
import os
import threading

from pipelines.nodes.evaluate.spec import SPEC as EVALUATE
from pipelines.nodes.publish_api.spec import SPEC as PUBLISH_API
from pipelines.nodes.quantize.spec import SPEC as QUANTIZE
from pipelines.nodes.serve_rag.spec import SPEC as SERVE_RAG
from pipelines.nodes.source_dataset.spec import SPEC as SOURCE_DATASET
from pipelines.nodes.source_documents.spec import SPEC as SOURCE_DOCUMENTS
from pipelines.nodes.source_model.spec import SPEC as SOURCE_MODEL
from pipelines.nodes.train_lora.spec import SPEC as TRAIN_LORA
from pipelines.nodes.vectorize_faiss.spec import SPEC as VECTORIZE_FAISS
from pipelines.spec import NodeSpec

EXTRA_MODULES_ENV = "LLMOPS_EXTRA_NODE_MODULES"

BUILTIN_SPECS: tuple[NodeSpec, ...] = (
    SOURCE_DOCUMENTS,
    SOURCE_DATASET,
    SOURCE_MODEL,
    VECTORIZE_FAISS,
    QUANTIZE,
    TRAIN_LORA,
    EVALUATE,
    SERVE_RAG,
    PUBLISH_API,
)

CATEGORIES: tuple[str, ...] = ("Sources", "Knowledge", "Models", "Training", "Evaluation", "Serving")

_specs: dict[str, NodeSpec] = {spec.kind: spec for spec in BUILTIN_SPECS}
_extras_loaded = False
_lock = threading.RLock()


def _load_extras() -> None:
    global _extras_loaded
    if _extras_loaded:
        return
    with _lock:
        if _extras_loaded:
            return
        _extras_loaded = True  # set first: an extra module calls register() while importing
        for name in os.environ.get(EXTRA_MODULES_ENV, "").split(","):
            if name.strip():
                importlib.import_module(name.strip())


def register(spec: NodeSpec) -> NodeSpec:
    """Add (or replace) a kind. Returns the spec so a module can write ``SPEC = register(...)``."""
    with _lock:
        _specs[spec.kind] = spec
    return spec


def unregister(kind: str) -> None:
    """Remove a kind (tests); a built-in kind removed this way comes back with ``reset()``."""
    with _lock:
        _specs.pop(kind, None)


def reset() -> None:
    """Back to the built-in kinds plus the env-var extras (tests)."""
    global _extras_loaded
    with _lock:
        _specs.clear()
        _specs.update({spec.kind: spec for spec in BUILTIN_SPECS})
        _extras_loaded = False
    _load_extras()


def all_specs() -> list[NodeSpec]:
    """Every kind: the built-ins in palette order, then extras in registration order."""
    _load_extras()
    return list(_specs.values())


def kinds() -> list[str]:
    _load_extras()
    return list(_specs)


def get_spec(kind: str) -> NodeSpec:
    """The spec of a kind; KeyError when it is unknown."""
    _load_extras()
    return _specs[kind]


def find_spec(kind: str) -> NodeSpec | None:
    _load_extras()
    return _specs.get(kind)


def specs_by_category() -> dict[str, list[NodeSpec]]:
    """The palette: categories in a fixed order, unknown categories of extra kinds last."""
    groups: dict[str, list[NodeSpec]] = {category: [] for category in CATEGORIES}
    for spec in all_specs():
        groups.setdefault(spec.category, []).append(spec)
    return {category: specs for category, specs in groups.items() if specs}
