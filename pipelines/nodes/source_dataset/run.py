"""source.dataset: parse the uploaded file, keep the good rows, split, write the artifact.

    dataset/train.jsonl       normalised records (see pipelines.ml.datasets)
    dataset/validation.jsonl  the held-out share (stratified by label for classification)
    dataset/meta.json         format, counts, labels and the first row errors

``ctx.resource("dataset", id)`` gives the stored file's path and name in the run's workspace.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.ml import datasets as ds
from pipelines.types import ArtifactType


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    resource: dict[str, Any] = ctx.resource("dataset", params.dataset)
    path = Path(resource["path"])
    if not path.is_file():
        raise NodeFailure(f"dataset: the file of dataset {params.dataset} is missing on this worker")
    fmt = params.format if params.format != "auto" else resource.get("format") or "auto"
    try:
        parsed = ds.parse(path.read_bytes(), name=resource.get("filename") or path.name, format=fmt)
    except ds.DatasetError as exc:
        raise NodeFailure(f"dataset: {exc}") from exc
    _log_errors(ctx, parsed)
    rows = parsed.rows
    if params.max_rows and len(rows) > params.max_rows:
        rows = random.Random(params.seed).sample(rows, params.max_rows)
    stratify = "label" if parsed.format == "classification" else None
    train, held = ds.split_rows(rows, validation=params.validation_split, seed=params.seed, stratify=stratify)
    meta = ds.write_dataset(
        Path(ctx.workdir) / "dataset",
        parsed=parsed,
        train=train,
        validation=held,
        name=resource.get("name", ""),
        dataset_id=params.dataset,
    )
    ctx.progress(1, 1, f"{len(train)} training rows, {len(held)} held out ({parsed.format})")
    return {"dataset": ArtifactOut(ArtifactType.DATASET, Path(ctx.workdir) / "dataset", meta)}


def _log_errors(ctx, parsed: ds.ParsedDataset) -> None:
    if not parsed.error_count:
        return
    shown = "; ".join(str(e) for e in parsed.errors[:5])
    more = f" (and {parsed.error_count - 5} more)" if parsed.error_count > 5 else ""
    ctx.log(f"{parsed.error_count} rows skipped: {shown}{more}", level="warning")
