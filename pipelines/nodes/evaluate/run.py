"""evaluate: quality and efficiency, baseline against adapter (``pipelines.ml.evaluation``)."""

from __future__ import annotations

from pipelines.context import ArtifactOut


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    from pipelines.ml.evaluation import evaluate

    return evaluate(
        ctx,
        model_ref=inputs["model"],
        dataset_ref=inputs["dataset"],
        adapter_ref=inputs.get("adapter"),
        params=params,
    )
