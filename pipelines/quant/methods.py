"""One entry point per method: quantize a loaded model in memory.

bitsandbytes methods are the exception: transformers quantizes while loading, so they go
through ``backends.bnb_load`` with the model folder instead (see the quantize node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipelines.quant import backends, mixed, qat
from pipelines.quant.convert import (
    observe_input_ranges,
    quantizable_embedding,
    quantizable_linears,
    quantize_embedding,
    set_module,
)
from pipelines.quant.hooks import Hooks
from pipelines.quant.layers import BitLinear, QuantLinear
from pipelines.quant.metrics import batches, context_length, token_stream

PRECISION = {
    "int8_symmetric": "int8",
    "int8_asymmetric": "int8",
    "int8_dynamic": "int8",
    "torchao_int8_weight_only": "int8",
    "bnb_nf4": "nf4",
    "bnb_fp4": "fp4",
    "bnb_int8": "int8",
    "ternary_b158": "ternary",
    "mixed": "mixed",
}
CALIBRATION_MAX_TOKENS = 8192
SENSITIVITY_MAX_TOKENS = 2048
QAT_MAX_TOKENS = 500_000


@dataclass
class Options:
    method: str
    per_channel: bool = True
    double_quant: bool = True
    compute_dtype: str = "bf16"
    skip: list[str] = field(default_factory=lambda: ["lm_head"])
    calibration_samples: int = 128
    qat_steps: int = 0
    qat_learning_rate: float = 1e-4
    size_budget_mb: float | None = None

    @classmethod
    def from_params(cls, params: Any) -> Options:
        return cls(
            method=params.method,
            per_channel=params.granularity == "per_channel",
            double_quant=params.double_quant,
            compute_dtype=params.compute_dtype,
            skip=list(params.skip_modules),
            calibration_samples=params.calibration_samples,
            qat_steps=params.qat_steps,
            qat_learning_rate=params.qat_learning_rate,
            size_budget_mb=params.size_budget_mb,
        )


@dataclass
class Data:
    """Text the methods may use, already tokenized."""

    tokenizer: Any
    train_texts: list[str]
    held_out_texts: list[str]

    def calibration_batches(self, model: nn.Module, samples: int, max_tokens: int) -> list[torch.Tensor]:
        if samples <= 0:
            return []
        ids = token_stream(self.tokenizer, self.train_texts[:samples], max_tokens)
        return batches(ids, context_length(model), batch_size=8)


def linear_names(model: nn.Module, options: Options) -> list[str]:
    names = quantizable_linears(model, options.skip)
    if not names:
        raise backends.QuantError(
            "the model has no linear layers to quantize"
            + (
                f" once the layers kept as they are ({', '.join(options.skip)}) are left out: remove some of "
                "them from 'Layers kept as they are'"
                if options.skip
                else ": choose a transformer language model"
            )
        )
    return names


def quantize(
    model: nn.Module, options: Options, data: Data, hooks: Hooks, evaluate=None
) -> tuple[nn.Module, dict]:
    """Quantize ``model`` (in place where possible); returns (model, details for the report).
    ``evaluate(model) -> perplexity`` lets ternary QAT report the PTQ-only perplexity too."""
    names = linear_names(model, options)
    method = options.method
    if method in ("int8_symmetric", "int8_asymmetric"):
        return model, int8_ptq(model, names, options, data, symmetric=method == "int8_symmetric")
    if method == "ternary_b158":
        return model, ternary(model, names, options, data, hooks, evaluate)
    if method == "mixed":
        return model, mixed_precision(model, names, options, data, hooks)
    if method == "int8_dynamic":
        model = backends.dynamic_quantize(model, names, per_channel=options.per_channel)
        return model, {"note": "activations are quantized per batch at run time; runs on CPUs only"}
    if method == "torchao_int8_weight_only":
        backends.torchao_quantize(model, names)
        return model, {"note": "torchao Int8WeightOnlyConfig: int8 weights, one scale per output channel"}
    raise backends.QuantError(f"unknown method {method!r}")


def int8_ptq(model: nn.Module, names: list[str], options: Options, data: Data, *, symmetric: bool) -> dict:
    calib = data.calibration_batches(model, options.calibration_samples, CALIBRATION_MAX_TOKENS)
    ranges = observe_input_ranges(model, names, calib) if calib else {}
    for name in names:
        layer = QuantLinear.from_linear(
            model.get_submodule(name), bits=8, symmetric=symmetric, per_channel=options.per_channel
        )
        if name in ranges:
            layer.set_input_range(*ranges[name])
        set_module(model, name, layer)
    embedding = _quantize_embedding(model, options, symmetric=symmetric)
    return {
        "activation_calibration": bool(ranges),
        "calibration_tokens": sum(b.numel() for b in calib),
        "activations": "int8, static ranges from calibration" if ranges else "kept in floating point",
        "embedding": embedding,
    }


def _quantize_embedding(model: nn.Module, options: Options, *, symmetric: bool = True) -> str | None:
    name = quantizable_embedding(model, options.skip)
    if name:
        quantize_embedding(model, name, symmetric=symmetric, per_channel=options.per_channel)
    return name


def ternary(model: nn.Module, names: list[str], options: Options, data: Data, hooks: Hooks, evaluate) -> dict:
    details: dict[str, Any] = {"activations": "int8 per token (absmax)", "packing": "5 weights per byte"}
    if options.qat_steps > 0:
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        model.float()
        qat.to_qat(model, names, per_channel=options.per_channel)
        if evaluate is not None:
            # At step 0 the QAT layers compute what post-training ternarization gives (up to the
            # bfloat16 rounding of BitLinear's stored row scales).
            details["perplexity_ptq"] = evaluate(model)
        stream = token_stream(data.tokenizer, data.train_texts, QAT_MAX_TOKENS)
        details["qat"] = qat.train(
            model,
            stream,
            steps=options.qat_steps,
            learning_rate=options.qat_learning_rate,
            seq_len=context_length(model),
            hooks=hooks,
        )
        qat.to_bitlinear(model, names)
        for param in model.parameters():  # back to the input's precision; packed layers have none
            param.data = param.data.to(dtype)
    else:
        for name in names:
            set_module(
                model, name, BitLinear.from_linear(model.get_submodule(name), per_channel=options.per_channel)
            )
    details["embedding"] = _quantize_embedding(model, options)
    return details


def _mixed_layout(model: nn.Module, names: list[str], options: Options):
    embedding = quantizable_embedding(model, options.skip)
    layers = [
        mixed.Layer(n, model.get_submodule(n).out_features, model.get_submodule(n).in_features) for n in names
    ]
    fixed_bytes, fixed_tensors = mixed.fixed_part(
        model, names, embedding=embedding, per_channel=options.per_channel
    )
    return layers, {
        "fixed_bytes": fixed_bytes,
        "fixed_tensors": fixed_tensors,
        "per_channel": options.per_channel,
        "budget_bytes": int((options.size_budget_mb or 0) * mixed.MiB),
    }


def check_budget(model: nn.Module, options: Options) -> None:
    """Fails at once (before anything is measured) when the budget cannot be met."""
    if not options.size_budget_mb:
        raise backends.QuantError("mixed precision needs a size budget: set 'Size budget (MB)'")
    layers, sizes = _mixed_layout(model, linear_names(model, options), options)
    mixed.require_budget(layers, **sizes)


def mixed_precision(model: nn.Module, names: list[str], options: Options, data: Data, hooks: Hooks) -> dict:
    check_budget(model, options)
    layers, sizes = _mixed_layout(model, names, options)
    embedding = _quantize_embedding(model, options)
    calib = data.calibration_batches(model, options.calibration_samples, SENSITIVITY_MAX_TOKENS)
    sensitivity = mixed.measure_sensitivity(
        model, layers, calib, per_channel=options.per_channel, hooks=hooks
    )
    levels = mixed.plan(layers, sensitivity, **sizes)
    mixed.apply_plan(model, levels, per_channel=options.per_channel)
    return {
        "budget_mb": options.size_budget_mb,
        "sensitivity_from": "calibration loss" if calib else "weight error (no calibration data)",
        "embedding": embedding,
        **mixed.summary(levels, layers, sensitivity, per_channel=options.per_channel),
    }
