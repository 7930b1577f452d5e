"""evaluate: measure a model (and optionally its adapter) on held-out data, against the baseline."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from pipelines.issues import CheckContext, GraphIssue
from pipelines.params import Params, describe_choices, param
from pipelines.resources import (
    DeviceProfile,
    ResourceEstimateInputs,
    first_model,
    human_bytes,
    inference_bytes,
)
from pipelines.spec import NodeSpec, Port, ResourceEstimate
from pipelines.types import ArtifactType

METRICS = {
    "perplexity": "Perplexity: how surprised the model is by the held-out text (lower is better).",
    "rouge": "ROUGE: word overlap between generated and expected answers (higher is better).",
    "bleu": "BLEU: n-gram precision of generated against expected answers (higher is better).",
    "accuracy": "Accuracy: share of labelled examples answered with the right label.",
}
SPLITS = {
    "validation": "The held-out rows the training never saw (the honest measure).",
    "train": "The training rows (shows whether the model learned them at all).",
    "all": "Every row.",
}
# An evaluation batch: a prompt of up to this many tokens plus the generated ones.
EVAL_PROMPT_TOKENS = 512
EVAL_BATCH = 8

Metric = Literal["perplexity", "rouge", "bleu", "accuracy"]


class EvaluateParams(Params):
    metrics: list[Metric] = param(
        ["perplexity"],
        title="Metrics",
        description="What to measure. " + describe_choices(METRICS),
        choices=METRICS,
        widget="checkboxes",
        min_length=1,
        max_length=4,
    )
    split: Literal["validation", "train", "all"] = param(
        "validation",
        title="Rows to evaluate on",
        description="Which rows of the dataset are used. " + describe_choices(SPLITS),
        choices=SPLITS,
        advanced=True,
    )
    max_samples: int = param(
        200,
        title="Maximum examples",
        description="Evaluate on at most this many examples: more is more reliable and slower.",
        ge=1,
        le=1_000_000,
    )
    max_new_tokens: int = param(
        64,
        title="Answer length (tokens)",
        description="For ROUGE, BLEU and accuracy: the longest answer the model may generate.",
        ge=1,
        le=4096,
        advanced=True,
    )
    compare_baseline: bool = param(
        True,
        title="Compare with the base model",
        description="Also measure the model without the adapter, and show both side by side.",
    )
    price_per_device_hour: float = param(
        0.0,
        title="Price per device hour",
        description="What an hour of the device costs you (any currency), to show the cost. 0 hides it.",
        ge=0.0,
        le=100_000.0,
        advanced=True,
    )

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


def estimate(
    params: EvaluateParams, input_meta: ResourceEstimateInputs, device: DeviceProfile | None = None
) -> ResourceEstimate | None:
    model = first_model(input_meta)
    if model is None:
        return None
    seq = EVAL_PROMPT_TOKENS + params.max_new_tokens
    total = inference_bytes(model, batch=EVAL_BATCH, seq=seq, device=device)
    return ResourceEstimate(
        total,
        f"model weights {human_bytes(model.weight_bytes)} plus a batch of {EVAL_BATCH} examples",
        advice="add a Quantize step before it (int8 or NF4) or choose a smaller model",
    )


UNLABELLED_FORMATS = ("instruction", "chat", "text")


def check(params: EvaluateParams, input_meta: ResourceEstimateInputs, ctx: CheckContext) -> list[GraphIssue]:
    sources = [meta for meta in input_meta.get("dataset", []) if meta.kind == "source.dataset"]
    data_format = sources[0].params.get("format") if sources else None
    if "accuracy" in params.metrics and data_format in UNLABELLED_FORMATS:
        return [GraphIssue(
            "metric_needs_labels",
            f"Accuracy needs labelled rows, but the dataset is read as “{data_format}”: "
            "choose perplexity or ROUGE, or a classification dataset.",
            field="metrics", severity="warning",
        )]
    return []


SPEC = NodeSpec(
    kind="evaluate",
    label="Evaluate",
    category="Evaluation",
    description="Measures quality (perplexity, ROUGE, BLEU, accuracy), speed and cost.",
    help=(
        "Tests the model on examples it did not train on and writes a report: quality "
        "(perplexity, ROUGE/BLEU for written answers, accuracy for labels), speed, memory and "
        "cost. Connect an adapter to compare the fine-tuned model with the base model side by "
        "side, e.g. “Baseline accuracy 0.79, adapter accuracy 0.84”."
    ),
    icon="📊",
    queue="gpu",
    params=EvaluateParams,
    inputs=(
        Port("model", ArtifactType.MODEL, "Model"),
        Port("dataset", ArtifactType.DATASET, "Test data"),
        Port("adapter", ArtifactType.ADAPTER, "Adapter", required=False),
    ),
    outputs=(Port("report", ArtifactType.REPORT, "Report"),),
    implementation="pipelines.nodes.evaluate.run:run",
    estimate=estimate,
    check=check,
)
