"""What the run engine hands to nodes through ``ctx.resource(kind, ref)``: plain data only.

    ctx.resource("model", "demo")  -> model_resource(workspace_id=..., ref="demo")
    ctx.resource("dataset", 3)     -> dataset_resource(workspace_id=..., ref=3)

Both resolve within the run's workspace; anything else is a NodeFailure with a message for
the user. No torch here: the node builds or downloads the weights itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from llmops.catalog.models import Dataset, ModelEntry
from llmops.catalog.services import HUB_ID_RE, allowed_local_path, dataset_path
from pipelines.context import NodeFailure


def model_resource(*, workspace_id: int, ref: Any) -> dict[str, Any]:
    """Where the model ``ref`` is and what is allowed with it:

    ``source`` ("demo" / "local" / "hub"), ``path`` (a folder; None for a hub model),
    ``hub_id``, ``revision``, ``name``, ``trust_remote_code_allowed``, ``demo_steps``.
    """
    ref = str(ref or "").strip()
    allowed = bool(settings.LLMOPS_ALLOW_TRUST_REMOTE_CODE)
    if ref == "demo":
        return {
            "source": "demo",
            "path": str(settings.LLMOPS_DEMO_MODEL_DIR),
            "hub_id": None,
            "revision": None,
            "name": "demo",
            "trust_remote_code_allowed": False,
            "demo_steps": settings.LLMOPS_DEMO_STEPS,
        }
    entry = ModelEntry.objects.filter(workspace_id=workspace_id, reference=ref).first()
    name = entry.name if entry else ref
    allowed = allowed and (entry is None or entry.trust_remote_code)
    if ref.startswith("/"):
        try:
            folder = allowed_local_path(ref)
        except ValidationError as exc:
            raise NodeFailure(f"model: {' '.join(exc.messages)}") from None
        return {
            "source": "local",
            "path": str(folder),
            "hub_id": None,
            "revision": None,
            "name": name,
            "trust_remote_code_allowed": allowed,
        }
    if HUB_ID_RE.match(ref):
        return {
            "source": "hub",
            "path": None,
            "hub_id": ref,
            "revision": (entry.revision or None) if entry else None,
            "name": name,
            "trust_remote_code_allowed": allowed,
        }
    raise NodeFailure(f"model: {ref!r} is neither “demo”, a hub id (org/name) nor an absolute folder path")


def dataset_resource(*, workspace_id: int, ref: Any) -> dict[str, Any]:
    """The stored file of dataset ``ref`` in this workspace: ``path``, ``filename``, ``format``,
    ``name``, ``rows``, ``labels``."""
    try:
        dataset_id = int(ref.get("id") if isinstance(ref, dict) else ref)
    except (TypeError, ValueError):
        raise NodeFailure(f"dataset: must be a dataset id (a whole number), not {ref!r}") from None
    dataset = Dataset.objects.filter(pk=dataset_id, workspace_id=workspace_id).first()
    if dataset is None:
        raise NodeFailure(
            f"dataset: dataset {dataset_id} does not exist in this workspace; upload it on the Models page"
        )
    path: Path = dataset_path(dataset)
    return {
        "id": dataset.pk,
        "name": dataset.name,
        "path": str(path),
        "filename": dataset.filename,
        "format": dataset.format,
        "rows": dataset.rows,
        "labels": list(dataset.labels),
    }
