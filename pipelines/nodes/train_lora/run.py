"""train.lora: LoRA / QLoRA / full fine-tuning (the work is in ``pipelines.ml.train``)."""

from __future__ import annotations

from pipelines.context import ArtifactOut


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    from pipelines.ml.train import train

    return train(ctx, model_ref=inputs["model"], dataset_ref=inputs["dataset"], params=params)
