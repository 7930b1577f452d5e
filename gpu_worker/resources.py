"""``ctx.resource(kind, ref)``: platform data a source node needs, resolved within the run's
workspace by functions the platform's apps provide, so node code never touches Django.

Each resolver is ``fn(*, workspace_id: int, ref) -> Any`` and raises NodeFailure (or
LookupError / PermissionError) for a ref that does not exist in that workspace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pipelines.context import NodeFailure

RESOLVERS: dict[str, str] = {
    "collection": "llmops.knowledge.resources:collection_resource",
    "dataset": "llmops.catalog.resources:dataset_resource",
    "model": "llmops.catalog.resources:model_resource",
    "vector_index": "llmops.knowledge.resources:vector_index_resource",
}


def load_resolver(kind: str) -> Callable[..., Any]:
    target = RESOLVERS.get(kind)
    if target is None:
        raise NodeFailure(f"Unknown resource kind {kind!r}; known kinds: {', '.join(sorted(RESOLVERS))}.")
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise NodeFailure(
            f"This platform cannot provide {kind} resources yet ({target} is missing: {exc})."
        ) from exc


def resolve(kind: str, ref: Any, *, workspace_id: int) -> Any:
    from django.core.exceptions import ObjectDoesNotExist

    resolver = load_resolver(kind)
    try:
        return resolver(workspace_id=workspace_id, ref=ref)
    except NodeFailure:
        raise
    except (LookupError, ObjectDoesNotExist, PermissionError, ValueError) as exc:
        raise NodeFailure(f"No {kind} {ref!r} in this workspace: {exc}") from exc
