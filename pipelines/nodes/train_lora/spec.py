"""train.lora: fine-tune a model with LoRA, QLoRA (4-bit base) or a full fine-tune."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.issues import CheckContext, GraphIssue
from pipelines.params import FieldError, Params, describe_choices, param
from pipelines.resources import (
    BITS,
    DeviceProfile,
    ResourceEstimateInputs,
    first_model,
    human_bytes,
    training_bytes,
)
from pipelines.spec import NodeSpec, Port, ResourceEstimate
from pipelines.types import ArtifactType

METHODS = {
    "lora": "LoRA: the model stays frozen; small low-rank matrices next to it learn the change.",
    "qlora": "QLoRA: LoRA on a model loaded in 4 bits. About 4x less memory, a little slower.",
    "full": "Full fine-tune: every weight is trained. Needs the most memory (about 16 bytes per weight).",
}
TASKS = {
    "auto": "Follow the dataset's format (labelled rows mean classification).",
    "generation": "Learn to write the answers (instructions, chat, text).",
    "classification": "Learn to answer with one of the dataset's labels.",
}
SCHEDULERS = {
    "linear": "The learning rate falls steadily to zero.",
    "cosine": "The learning rate falls along a smooth curve.",
    "constant": "The learning rate stays the same.",
    "constant_with_warmup": "Rises during the warmup, then stays the same.",
}
OPTIMIZERS = {
    "adamw_torch": "AdamW: the standard choice.",
    "adamw_8bit": "AdamW with 8-bit states (bitsandbytes): less memory.",
    "paged_adamw_8bit": "8-bit AdamW whose states move to the CPU when the GPU is full (QLoRA's choice).",
    "paged_adamw_32bit": "Paged AdamW with 32-bit states.",
    "sgd": "Plain SGD with momentum: the least memory, usually learns slower.",
}
QUANT_TYPES = {
    "nf4": "NF4: 4-bit levels shaped like normally distributed weights (QLoRA's choice).",
    "fp4": "FP4: a 4-bit floating-point format.",
}
COMPUTE_DTYPES = {
    "bf16": "bfloat16: robust, needs a recent GPU or CPU.",
    "fp16": "float16: for older GPUs.",
    "fp32": "float32: slowest, most exact.",
}
# Matrices LoRA adapts per layer when target modules are "auto": the four attention projections
# (q, k, v, o), which pipelines/ml/lora.py picks for Llama; the estimate counts a list's length.
AUTO_TARGET_MATRICES = 4

ModuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.*-]+$")]


class TrainLoraParams(Params):
    method: Literal["lora", "qlora", "full"] = param(
        "lora",
        title="Method",
        description="How the model is fine-tuned. " + describe_choices(METHODS),
        choices=METHODS,
    )
    task: Literal["auto", "generation", "classification"] = param(
        "auto",
        title="Task",
        description="What the model learns to do. " + describe_choices(TASKS),
        choices=TASKS,
        advanced=True,
    )
    r: int = param(
        16,
        title="Rank (r)",
        description=(
            "Size of the LoRA matrices. 8-16 suits most tasks; higher (up to 64-128) learns more "
            "complex changes and trains more weights."
        ),
        ge=1,
        le=1024,
    )
    alpha: int = param(
        32,
        title="Alpha",
        description="Scales the LoRA update (update × alpha / r). Twice the rank is a good start.",
        ge=1,
        le=4096,
    )
    dropout: float = param(
        0.05,
        title="Dropout",
        description="Share of LoRA inputs randomly dropped during training to avoid over-fitting (0.05-0.1).",
        ge=0.0,
        le=0.9,
    )
    target_modules: Literal["auto"] | list[ModuleName] = param(
        "auto",
        title="Layers to adapt",
        description=(
            "Which weight matrices get LoRA matrices: “auto” picks them for the model's "
            "architecture (the attention projections q_proj, k_proj, v_proj and o_proj for "
            "Llama), or list names such as q_proj, v_proj, gate_proj."
        ),
        widget="tags",
        advanced=True,
    )
    learning_rate: float = param(
        2e-4,
        title="Learning rate",
        description=(
            "How big each training step is. 1e-4 to 5e-4 works for LoRA; a full "
            "fine-tune needs ~1e-5."
        ),
        gt=0,
        le=1.0,
    )
    epochs: float = param(
        1.0,
        title="Epochs",
        description="How many times the training goes through the whole dataset.",
        gt=0,
        le=1000,
    )
    max_steps: int = param(
        0,
        title="Maximum steps",
        description="Stop after this many steps, whatever the epochs say. 0 = use the epochs.",
        ge=0,
        le=10_000_000,
        advanced=True,
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = param(
        4,
        title="Batch size",
        description=(
            "Examples per step on the device. Larger is faster and needs more memory; “auto” "
            "finds the largest that fits."
        ),
    )
    gradient_accumulation_steps: int = param(
        1,
        title="Gradient accumulation",
        description=(
            "Add up the gradients of this many batches before each update: a larger effective "
            "batch (batch size × this) without more memory."
        ),
        ge=1,
        le=1024,
        advanced=True,
    )
    max_seq_length: int = param(
        512,
        title="Maximum length (tokens)",
        description="Longer examples are cut to this many tokens. Longer needs more memory.",
        ge=16,
        le=131_072,
    )
    warmup_ratio: float = param(
        0.03,
        title="Warmup share",
        description="Share of the steps during which the learning rate rises from zero, for a stable start.",
        ge=0.0,
        le=0.5,
        advanced=True,
    )
    weight_decay: float = param(
        0.001,
        title="Weight decay",
        description="Pulls trained weights slightly towards zero at each step, against over-fitting.",
        ge=0.0,
        le=1.0,
        advanced=True,
    )
    max_grad_norm: float = param(
        0.3,
        title="Gradient clipping",
        description=(
            "Largest allowed size of a step's gradient; protects against sudden "
            "jumps. 0 turns it off."
        ),
        ge=0.0,
        le=100.0,
        advanced=True,
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = param(
        "constant",
        title="Learning-rate schedule",
        description="How the learning rate changes during training. " + describe_choices(SCHEDULERS),
        choices=SCHEDULERS,
        advanced=True,
    )
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"] = param(
        "adamw_torch",
        title="Optimizer",
        description="The algorithm that updates the weights. " + describe_choices(OPTIMIZERS),
        choices=OPTIMIZERS,
        advanced=True,
    )
    load_in_4bit: bool = param(
        False,
        title="Load the base model in 4 bits",
        description="This is what QLoRA means; it is switched on by choosing QLoRA as the method.",
        advanced=True,
    )
    quant_type: Literal["nf4", "fp4"] = param(
        "nf4",
        title="4-bit format",
        description="For QLoRA: the 4-bit number format of the frozen base. " + describe_choices(QUANT_TYPES),
        choices=QUANT_TYPES,
        advanced=True,
    )
    double_quant: bool = param(
        True,
        title="Double quantization",
        description="For QLoRA: also store the 4-bit scales in 8 bits, saving about 0.4 bits per weight.",
        advanced=True,
    )
    compute_dtype: Literal["bf16", "fp16", "fp32"] = param(
        "bf16",
        title="Compute precision",
        description="The precision the training computes in. " + describe_choices(COMPUTE_DTYPES),
        choices=COMPUTE_DTYPES,
        advanced=True,
    )
    gradient_checkpointing: bool = param(
        False,
        title="Gradient checkpointing",
        description=(
            "Recompute intermediate results instead of storing them: much less "
            "memory, about 30% slower."
        ),
        advanced=True,
    )
    packing: bool = param(
        False,
        title="Pack short examples",
        description="Put several short examples in one sequence so no compute is spent on padding.",
        advanced=True,
    )
    logging_steps: int = param(
        10,
        title="Report every N steps",
        description="How often the loss and learning rate are sent to the run page.",
        ge=1,
        le=100_000,
        advanced=True,
    )
    save_steps: int = param(
        100,
        title="Checkpoint every N steps",
        description="How often training is saved, so an interrupted run resumes from there.",
        ge=1,
        le=1_000_000,
        advanced=True,
    )
    merge_adapter: bool = param(
        False,
        title="Also save a merged model",
        description="Also save the base model with the adapter merged in, as one ordinary model.",
        advanced=True,
    )
    seed: int = param(
        42,
        title="Random seed",
        description="The same seed with the same data and settings gives the same result.",
        ge=0,
        le=2**31 - 1,
        advanced=True,
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        # The form sends "q_proj, v_proj"; the API sends a list. Both mean the same.
        if isinstance(value, str) and value.strip() != "auto":
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _method_and_4bit_agree(self) -> TrainLoraParams:
        if self.method == "full" and self.load_in_4bit:
            raise FieldError("load_in_4bit", "a full fine-tune cannot train a 4-bit model: choose QLoRA")
        if self.load_in_4bit:
            self.method = "qlora"
        self.load_in_4bit = self.method == "qlora"
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise FieldError("target_modules", "name at least one layer, or use “auto”")
        return self


def estimate(
    params: TrainLoraParams, input_meta: ResourceEstimateInputs, device: DeviceProfile | None = None
) -> ResourceEstimate | None:
    model = first_model(input_meta)
    if model is None:
        return None
    matrices = AUTO_TARGET_MATRICES if params.target_modules == "auto" else len(params.target_modules)
    base_bits = _base_bits(params, model.bits)
    batch = 1 if params.batch_size == "auto" else params.batch_size
    total, parts = training_bytes(
        model, method=params.method, rank=params.r, matrices_per_layer=matrices, base_bits=base_bits,
        optimizer=params.optimizer, batch=batch, seq=params.max_seq_length,
        checkpointing=params.gradient_checkpointing,
        activation_bits=32 if params.compute_dtype == "fp32" else 16, device=device,
    )
    explanation = ", ".join(f"{name} {human_bytes(size)}" for name, size in parts.items() if size)
    field, advice = _remedy(params, parts)
    return ResourceEstimate(total, explanation, field=field, advice=advice)


def check(params: TrainLoraParams, input_meta: ResourceEstimateInputs, ctx: CheckContext) -> list[GraphIssue]:
    model = first_model(input_meta)
    if model is not None and model.context and params.max_seq_length > model.context:
        return [GraphIssue(
            "exceeds_context",
            f"Maximum length: {params.max_seq_length} tokens is more than the model handles "
            f"({model.context}); use {model.context} or less.",
            field="max_seq_length",
        )]
    return []


def _base_bits(params: TrainLoraParams, model_bits: float) -> float:
    if params.method == "qlora":
        return BITS[f"{params.quant_type}_double" if params.double_quant else params.quant_type]
    if params.method == "lora":
        # The frozen base is loaded in the compute precision unless it is already smaller.
        return min(model_bits, 32.0 if params.compute_dtype == "fp32" else 16.0)
    return 32.0


def _remedy(params: TrainLoraParams, parts: dict[str, int]) -> tuple[str, str]:
    """The field to change first: the method when weights dominate, else the batch."""
    per_example = parts["activations"] + parts["logits"]
    if params.method != "qlora" and parts["weights"] + parts["trainable"] > per_example:
        return "method", "use QLoRA (a 4-bit base) or LoRA instead of a full fine-tune"
    if not params.gradient_checkpointing and params.batch_size != "auto" and params.batch_size == 1:
        return "gradient_checkpointing", "turn on gradient checkpointing or lower the maximum length"
    return "batch_size", "lower the batch size (raise gradient accumulation to keep the effective batch)"


SPEC = NodeSpec(
    kind="train.lora",
    label="Fine-tune (LoRA)",
    category="Training",
    description="Teaches a model your examples with LoRA or QLoRA; produces a small adapter.",
    help=(
        "Fine-tunes the model on your dataset. With LoRA the model itself stays unchanged and a "
        "small “adapter” (a few MB) learns the difference; QLoRA does the same on a model loaded "
        "in 4 bits, so a 7B model fits on a single consumer GPU. Start with the defaults "
        "(rank 16, alpha 32, learning rate 2e-4); the run page shows the training loss live, "
        "and it should go down."
    ),
    icon="🎓",
    queue="gpu",
    params=TrainLoraParams,
    inputs=(
        Port("model", ArtifactType.MODEL, "Base model"),
        Port("dataset", ArtifactType.DATASET, "Training data"),
    ),
    outputs=(
        Port("adapter", ArtifactType.ADAPTER, "Adapter"),
        Port("report", ArtifactType.REPORT, "Report"),
    ),
    implementation="pipelines.nodes.train_lora.run:run",
    estimate=estimate,
    check=check,
)
