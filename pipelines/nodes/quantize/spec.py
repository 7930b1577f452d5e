"""quantize: store a model's weights in fewer bits (int8, NF4/FP4, ternary b1.58, mixed)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.issues import CheckContext, GraphIssue
from pipelines.params import FieldError, Params, describe_choices, param
from pipelines.resources import (
    BITS,
    DeviceProfile,
    MiB,
    ModelFacts,
    ResourceEstimateInputs,
    first_model,
    human_bytes,
    inference_bytes,
    training_bytes,
)
from pipelines.spec import NodeSpec, Port, ResourceEstimate
from pipelines.types import ArtifactType

METHODS = {
    "int8_symmetric": "int8, symmetric: scale = max|w| / 127, zero stays zero. 4x smaller than float32.",
    "int8_asymmetric": "int8, asymmetric: scale and zero point from min and max; better for skewed weights.",
    "int8_dynamic": "Dynamic int8: int8 weights, activations quantized while running. Good for CPU serving.",
    "torchao_int8_weight_only": "int8 weights through torchao: the same size, often faster kernels.",
    "bnb_nf4": "NF4 (bitsandbytes, as in QLoRA): 4-bit levels shaped like normal weights. 8x smaller.",
    "bnb_fp4": "FP4 (bitsandbytes): a 4-bit floating-point format.",
    "bnb_int8": "LLM.int8() (bitsandbytes): int8 with the rare outlier features kept in 16 bits.",
    "ternary_b158": "Ternary b1.58 (BitNet): every weight becomes -1, 0 or +1 times a scale. Needs QAT.",
    "mixed": "Mixed precision: sensitive layers keep more bits, the rest fewer, within a size budget.",
}
GRANULARITIES = {
    "per_channel": "One scale per output channel: more exact, the usual choice.",
    "per_tensor": "One scale for the whole matrix: simplest, less exact.",
}
COMPUTE_DTYPES = {
    "bf16": "bfloat16: robust, needs a recent GPU or CPU.",
    "fp16": "float16: for older GPUs.",
    "fp32": "float32: slowest, most exact.",
}

Method = Literal[
    "int8_symmetric", "int8_asymmetric", "int8_dynamic", "torchao_int8_weight_only",
    "bnb_nf4", "bnb_fp4", "bnb_int8", "ternary_b158", "mixed",
]
ModuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.*]+$")]


class QuantizeParams(Params):
    method: Method = param(
        "int8_symmetric",
        title="Method",
        description="How the weights are stored in fewer bits. " + describe_choices(METHODS),
        choices=METHODS,
    )
    granularity: Literal["per_channel", "per_tensor"] = param(
        "per_channel",
        title="Scale granularity",
        description="For the int8 and ternary methods: how many scales a weight matrix gets. "
        + describe_choices(GRANULARITIES),
        choices=GRANULARITIES,
        advanced=True,
    )
    double_quant: bool = param(
        True,
        title="Double quantization",
        description="For NF4/FP4: also store the scales in 8 bits, saving about 0.4 bits per weight.",
        advanced=True,
    )
    compute_dtype: Literal["bf16", "fp16", "fp32"] = param(
        "bf16",
        title="Compute precision",
        description="For NF4/FP4: the precision weights are expanded to while computing. "
        + describe_choices(COMPUTE_DTYPES),
        choices=COMPUTE_DTYPES,
        advanced=True,
    )
    calibration_samples: int = param(
        128,
        title="Calibration samples",
        description=(
            "Rows of the connected calibration data used to measure activation ranges and layer "
            "sensitivity. 0 skips calibration."
        ),
        ge=0,
        le=10_000,
        advanced=True,
    )
    qat_steps: int = param(
        0,
        title="Quantization-aware training steps",
        description=(
            "Fine-tune the quantized model for this many steps so it adapts to the fewer bits "
            "(strongly advised for ternary). 0 = no training, quantize only."
        ),
        ge=0,
        le=100_000,
    )
    qat_learning_rate: float = param(
        1e-4,
        title="Quantization-aware training learning rate",
        description="Step size of that fine-tuning. Smaller is safer, larger adapts faster.",
        gt=0,
        le=1.0,
        advanced=True,
    )
    size_budget_mb: float | None = param(
        None,
        title="Size budget (MB)",
        description="For mixed precision: the largest the quantized model may be, in megabytes.",
        gt=0,
        le=10_000_000,
    )
    skip_modules: list[ModuleName] = param(
        ["lm_head"],
        title="Layers kept as they are",
        description="Names of layers left unquantized, e.g. lm_head (the output layer), which is sensitive.",
        widget="tags",
        max_length=64,
        advanced=True,
    )

    @model_validator(mode="after")
    def _budget_for_mixed(self) -> QuantizeParams:
        if self.method == "mixed" and self.size_budget_mb is None:
            raise FieldError("size_budget_mb", "mixed precision needs a size budget in MB")
        return self


def output_bits(params: QuantizeParams, model: ModelFacts) -> float:
    """Bits per weight after quantization (see pipelines.resources for the NF4 overheads)."""
    if params.method in ("bnb_nf4", "bnb_fp4"):
        base = params.method.removeprefix("bnb_")
        return BITS[f"{base}_double" if params.double_quant else base]
    if params.method == "ternary_b158":
        return BITS["ternary"]
    if params.method == "mixed" and params.size_budget_mb:
        return min(model.bits, params.size_budget_mb * MiB * 8 / model.params)
    return BITS["int8"]


def facts(params: QuantizeParams, input_meta: ResourceEstimateInputs) -> dict[str, ModelFacts | None]:
    model = first_model(input_meta)
    return {"model": model.with_bits(output_bits(params, model), params.method) if model else None}


def estimate(
    params: QuantizeParams, input_meta: ResourceEstimateInputs, device: DeviceProfile | None = None
) -> ResourceEstimate | None:
    model = first_model(input_meta)
    if model is None:
        return None
    if params.qat_steps:
        # QAT trains every weight (straight-through estimator): a full fine-tune's memory.
        total, _ = training_bytes(
            model, method="full", rank=0, matrices_per_layer=0, base_bits=model.bits, optimizer="adamw_torch",
            batch=4, seq=512, checkpointing=False, activation_bits=16, device=device,
        )
        return ResourceEstimate(
            total, f"quantization-aware training updates all {model.params:,} weights",
            field="qat_steps", advice="set the training steps to 0, or quantize a smaller model",
        )
    quantized = int(model.params * output_bits(params, model) / 8)
    total = inference_bytes(model, batch=1, seq=512, device=device) + quantized
    return ResourceEstimate(
        total,
        f"the original model ({human_bytes(model.weight_bytes)}) "
        f"plus its quantized copy ({human_bytes(quantized)})",
        advice="load the base model in bfloat16 (Base model → Precision) or use a bigger device",
    )


def check(params: QuantizeParams, input_meta: ResourceEstimateInputs, ctx: CheckContext) -> list[GraphIssue]:
    issues = []
    if params.method == "ternary_b158" and params.qat_steps == 0:
        issues.append(GraphIssue(
            "ternary_without_training",
            "Ternary weights lose much of the model's quality unless it is retrained a little: "
            "set some quantization-aware training steps (e.g. 200).",
            field="qat_steps", severity="warning",
        ))
    needs_data = params.qat_steps > 0 or params.method == "mixed"
    if needs_data and not input_meta.get("dataset"):
        issues.append(GraphIssue(
            "no_calibration_data",
            "Connect a dataset to Calibration data: quantization-aware training and mixed "
            "precision learn from examples (without one, a small built-in text is used).",
            field="dataset", severity="warning",
        ))
    return issues


SPEC = NodeSpec(
    kind="quantize",
    label="Quantize",
    category="Models",
    description="Makes a model smaller and faster by storing its weights in fewer bits.",
    help=(
        "Stores the model's weights with fewer bits: int8 makes it 4x smaller than float32 with "
        "almost no loss, NF4 8x smaller, ternary (every weight -1, 0 or +1) about 16x smaller "
        "but it must be retrained a little (quantization-aware training) to stay useful. Connect "
        "a dataset as calibration data to measure quality before and after. The report compares "
        "size, speed and quality."
    ),
    icon="🗜️",
    queue="gpu",
    params=QuantizeParams,
    inputs=(
        Port("model", ArtifactType.MODEL, "Model"),
        Port("dataset", ArtifactType.DATASET, "Calibration data", required=False),
    ),
    outputs=(
        Port("model", ArtifactType.MODEL, "Quantized model"),
        Port("report", ArtifactType.REPORT, "Report"),
    ),
    implementation="pipelines.nodes.quantize.run:run",
    estimate=estimate,
    facts=facts,
    check=check,
)
