"""Reads for the catalog: models and datasets of the user's workspaces, and the demo model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import Http404

from llmops.accounts.models import Workspace
from llmops.catalog.models import Dataset, ModelEntry
from pipelines.ml.modelinfo import ModelFolderError, inspect_model_dir

DEMO = "demo"


def model_list(*, user, workspace: Workspace | None = None):
    qs = ModelEntry.objects.for_user(user)
    return qs.filter(workspace=workspace) if workspace is not None else qs


def model_get(*, user, model_id: int) -> ModelEntry:
    entry = ModelEntry.objects.for_user(user).filter(pk=model_id).first()
    if entry is None:
        raise Http404("No such model")
    return entry


def dataset_list(*, user, workspace: Workspace | None = None):
    qs = Dataset.objects.for_user(user)
    return qs.filter(workspace=workspace) if workspace is not None else qs


def dataset_get(*, user, dataset_id: int) -> Dataset:
    dataset = Dataset.objects.for_user(user).filter(pk=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset")
    return dataset


def demo_model() -> dict[str, Any]:
    """The bundled demo model: built or not, and its facts when built."""
    folder = Path(settings.LLMOPS_DEMO_MODEL_DIR)
    marker = folder / "demo.json"
    out: dict[str, Any] = {
        "reference": DEMO,
        "name": "Demo model (bundled)",
        "path": str(folder),
        "built": False,
    }
    if not marker.is_file():
        return out
    try:
        info = inspect_model_dir(folder)
        build = json.loads(marker.read_text())
    except (ModelFolderError, OSError, ValueError):
        return out
    out.update(built=True, info=info.to_dict(), build=build)
    return out


def model_facts(*, workspace_id: int, ref: str) -> dict[str, Any] | None:
    """What is known about the model ``source.model`` will load for ``ref``, without loading it:
    architecture, parameters, context length and linear layer names (``projection_modules``).
    For the validator's pre-flight (sequence length, target modules). None when unknown."""
    if ref == DEMO:
        demo = demo_model()
        return demo.get("info")
    entry = ModelEntry.objects.filter(workspace_id=workspace_id, reference=ref).first()
    if entry is not None and entry.info:
        return entry.info
    return None
