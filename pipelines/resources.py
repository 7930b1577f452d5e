"""Resource pre-flight: how much memory a node needs, estimated before anything runs.

Everything here is arithmetic on what the graph says; nothing is loaded. The estimate is
deliberately coarse (within ~30% for Llama-shaped models): it is there to say "a full
fine-tune of a 7B model will not fit on this 24 GB card, try QLoRA", not to plan to the byte.

The formula, for a model with P parameters, hidden size h, L layers and vocabulary V, a batch
of b sequences of s tokens:

    weights      = P * bits / 8
                   bits = 32 (float32), 16 (bfloat16/float16), 8 (int8), 4.5 (NF4/FP4 with one
                   float32 scale per 64 weights: 4 + 32/64), 4.127 with double quantization
                   (8-bit scales + one float32 per 256 scales: 4 + 8/64 + 32/(64*256)),
                   2 for ternary (packed two bits per weight).
    trainable    = P for a full fine-tune; for LoRA, r * (d_in + d_out) per adapted matrix,
                   about 2 * r * h * (matrices per layer) * L.
    train states = trainable * (4 weight + 4 gradient + optimizer) bytes, optimizer = 8 for
                   AdamW (two float32 moments), 2 for 8-bit AdamW, 4 for SGD with momentum.
                   A full fine-tune keeps its float32 master weights in those 4 bytes, so its
                   frozen "weights" term is 0; LoRA keeps the base at its own precision.
    activations  = b * s * h * L * 34 bytes in 16-bit (Korthikanti et al. 2022, "Reducing
                   Activation Recomputation", per layer s*b*h*34 with fused attention), twice
                   that in float32; with gradient checkpointing only each layer's input is kept,
                   b * s * h * (2 * L + 34).
    logits       = b * s * V * 4 bytes * 2 (float32 logits and their gradient).
    inference    = weights + KV cache (b * s * L * 2 * h * 2 bytes) + logits of one step.
    total        = (sum) * 1.1 + 0.5 GiB CUDA context on a GPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

GiB = 1024**3
MiB = 1024**2

# Bits per weight as stored, per precision / quantization (see the module docstring).
BITS: dict[str, float] = {
    "float32": 32.0, "fp32": 32.0,
    "bfloat16": 16.0, "bf16": 16.0, "float16": 16.0, "fp16": 16.0,
    "int8": 8.0,
    "nf4": 4.5, "fp4": 4.5, "nf4_double": 4.127, "fp4_double": 4.127,
    "ternary": 2.0,
}
OPTIMIZER_BYTES = {"adamw_torch": 8, "paged_adamw_32bit": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 4}
ACTIVATION_BYTES_16 = 34
CUDA_CONTEXT_BYTES = GiB // 2
SAFETY_FACTOR = 1.1


@dataclass(frozen=True)
class DeviceProfile:
    """The device a pipeline will run on, as the user chose it (or as a worker reported it)."""

    name: str
    kind: Literal["cpu", "cuda"]
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "memory_bytes": self.memory_bytes}


# Devices a user can choose in the builder for the pre-flight (memory a process can use).
DEVICE_PROFILES: dict[str, DeviceProfile] = {
    profile.name: profile
    for profile in (
        DeviceProfile("cpu-8gb", "cpu", 8 * GiB),
        DeviceProfile("cpu-16gb", "cpu", 16 * GiB),
        DeviceProfile("cpu-64gb", "cpu", 64 * GiB),
        DeviceProfile("t4-16gb", "cuda", 15 * GiB),
        DeviceProfile("rtx4090-24gb", "cuda", 24 * GiB),
        DeviceProfile("l4-24gb", "cuda", 22 * GiB),
        DeviceProfile("a10g-24gb", "cuda", 22 * GiB),
        DeviceProfile("a100-40gb", "cuda", 40 * GiB),
        DeviceProfile("a100-80gb", "cuda", 80 * GiB),
        DeviceProfile("h100-80gb", "cuda", 80 * GiB),
        DeviceProfile("h200-141gb", "cuda", 141 * GiB),
    )
}


def resolve_device(device: DeviceProfile | str | None) -> DeviceProfile | None:
    """A DeviceProfile from a profile, a profile name ("a100-80gb"), or None; KeyError if unknown."""
    if device is None or isinstance(device, DeviceProfile):
        return device
    return DEVICE_PROFILES[device]


@dataclass(frozen=True)
class ModelFacts:
    """What is statically known about a model: enough to estimate its memory."""

    name: str
    params: int  # parameter count
    hidden: int
    layers: int
    vocab: int = 32_000
    bits: float = 16.0  # bits per weight as it will be loaded
    context: int | None = None  # longest sequence it supports, when known
    quantized: str | None = None  # the quantization method, when quantized

    @property
    def weight_bytes(self) -> int:
        return int(self.params * self.bits / 8)

    def with_bits(self, bits: float, quantized: str | None = None) -> ModelFacts:
        return replace(self, bits=bits, quantized=quantized or self.quantized)


@dataclass(frozen=True)
class UpstreamMeta:
    """What an estimate knows about the node feeding one of its input ports."""

    node: str
    kind: str
    port: str
    params: dict[str, Any] = field(default_factory=dict)
    model: ModelFacts | None = None


# What an estimate receives: each input port name -> one UpstreamMeta per edge into it.
ResourceEstimateInputs = dict[str, list[UpstreamMeta]]


# Llama-family shapes (parameters, hidden, layers), for sizes parsed from a hub id.
_SHAPES: tuple[tuple[float, int, int], ...] = (
    (0.125e9, 768, 12), (0.35e9, 1024, 24), (0.5e9, 896, 24), (1.1e9, 2048, 22),
    (1.5e9, 1536, 28), (2.7e9, 2560, 32), (3e9, 3072, 28), (7e9, 4096, 32), (8e9, 4096, 32),
    (13e9, 5120, 40), (34e9, 8192, 48), (70e9, 8192, 80), (180e9, 14848, 80),
)
_SIZE_RE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")


def parse_model_size(name: str) -> int | None:
    """Parameter count from a hub id such as "meta-llama/Llama-2-7b-hf", "TinyLlama-1.1B",
    "facebook/opt-350m" or "Mixtral-8x7B"; None when the name does not say."""
    best: int | None = None
    for experts, number, unit in _SIZE_RE.findall(name.lower()):
        value = float(number) * (1e9 if unit == "b" else 1e6) * (int(experts) if experts else 1)
        if 1e6 <= value <= 2e12:
            best = int(value)  # the last size in the name wins ("Llama-3.1-8B" -> 8B)
    return best


def facts_from_size(name: str, params: int, bits: float = 16.0) -> ModelFacts:
    """Facts for a model known only by its parameter count: the nearest Llama shape."""
    _, hidden, layers = min(_SHAPES, key=lambda shape: abs(math.log(shape[0] / params)))
    return ModelFacts(name=name, params=params, hidden=hidden, layers=layers, bits=bits)


def human_bytes(n: float) -> str:
    for unit, size in (("GB", GiB), ("MB", MiB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _finish(total: float, device: DeviceProfile | None) -> int:
    on_gpu = device is not None and device.kind == "cuda"
    return int(total * SAFETY_FACTOR + (CUDA_CONTEXT_BYTES if on_gpu else 0))


def lora_trainable_params(model: ModelFacts, rank: int, matrices_per_layer: int) -> int:
    return 2 * rank * model.hidden * matrices_per_layer * model.layers


def training_bytes(
    model: ModelFacts,
    *,
    method: str,
    rank: int,
    matrices_per_layer: int,
    base_bits: float,
    optimizer: str,
    batch: int,
    seq: int,
    checkpointing: bool,
    activation_bits: int,
    device: DeviceProfile | None,
) -> tuple[int, dict[str, int]]:
    """Total bytes for training, and the parts (for the explanation and the advice)."""
    trainable = model.params if method == "full" else lora_trainable_params(model, rank, matrices_per_layer)
    state_per_param = 8 + OPTIMIZER_BYTES.get(optimizer, 8)
    per_token = model.hidden * (2 * model.layers + ACTIVATION_BYTES_16 if checkpointing
                                else model.layers * ACTIVATION_BYTES_16)
    parts = {
        "weights": 0 if method == "full" else int(model.params * base_bits / 8),
        "trainable": trainable * state_per_param,
        "activations": int(batch * seq * per_token * activation_bits / 16),
        "logits": batch * seq * model.vocab * 8,
    }
    return _finish(sum(parts.values()), device), parts


def inference_bytes(model: ModelFacts, *, batch: int, seq: int, device: DeviceProfile | None) -> int:
    kv_cache = batch * seq * model.layers * 2 * model.hidden * 2
    return _finish(model.weight_bytes + kv_cache + batch * model.vocab * 4, device)


def first_model(input_meta: dict[str, list[UpstreamMeta]], port: str = "model") -> ModelFacts | None:
    metas = input_meta.get(port) or []
    return metas[0].model if metas else None
