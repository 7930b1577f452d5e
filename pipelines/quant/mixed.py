"""Mixed precision: the most sensitive layers keep more bits, within a size budget.

1. Sensitivity: quantize one layer at a time to each level and measure how much the loss on
   the calibration text rises (without calibration text: the layer's relative weight error,
   a data-free stand-in).
2. Plan: start with every layer at the smallest level; if even that exceeds the budget, fail
   and say the smallest size reachable. Then repeatedly upgrade the layer whose next level
   buys the largest loss reduction per extra byte, while the budget allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipelines.quant.backends import QuantError
from pipelines.quant.convert import set_module
from pipelines.quant.hooks import Hooks
from pipelines.quant.layers import BitLinear, Float16Linear, QuantLinear
from pipelines.quant.metrics import calibration_loss

LEVELS = ("ternary", "int4", "int8", "fp16")
MiB = 1024**2
# A safetensors header lists every tensor (name, dtype, shape, offsets): at most this many
# bytes each, so that the file, not only its tensors, stays within the budget.
HEADER_BYTES_PER_TENSOR = 192
HEADER_BYTES_BASE = 2048


def level_bytes(level: str, out_features: int, in_features: int, *, per_channel: bool) -> int:
    """Stored bytes of one weight matrix at a level, scales included."""
    n, scales = out_features * in_features, 4 * (out_features if per_channel else 1)
    return {
        "ternary": math.ceil(n / 5) + (2 * out_features if per_channel else 4),  # bfloat16 row scales
        "int4": math.ceil(n / 2) + scales,
        "int8": n + scales,
        "fp16": 2 * n,
    }[level]


def make_layer(level: str, linear: nn.Linear, *, per_channel: bool) -> nn.Module:
    if level == "ternary":
        return BitLinear.from_linear(linear, per_channel=per_channel)
    if level == "fp16":
        return Float16Linear.from_linear(linear)
    return QuantLinear.from_linear(
        linear, bits=4 if level == "int4" else 8, symmetric=True, per_channel=per_channel
    )


@dataclass
class Layer:
    name: str
    out_features: int
    in_features: int


def measure_sensitivity(
    model: nn.Module, layers: list[Layer], batches: list[torch.Tensor], *, per_channel: bool, hooks: Hooks
) -> dict[str, dict[str, float]]:
    """{layer: {level: loss increase}}; 16-bit counts as lossless (0)."""
    base = calibration_loss(model, batches) if batches else 0.0
    result: dict[str, dict[str, float]] = {}
    for i, layer in enumerate(layers):
        hooks.check_cancelled()
        original = model.get_submodule(layer.name)
        result[layer.name] = {"fp16": 0.0}
        for level in LEVELS[:-1]:
            candidate = make_layer(level, original, per_channel=per_channel)
            if batches:
                set_module(model, layer.name, candidate)
                result[layer.name][level] = max(0.0, calibration_loss(model, batches) - base)
                set_module(model, layer.name, original)
            else:
                w = original.weight.detach().float()
                err = (w - candidate.dequantized_weight(torch.float32)).norm() / w.norm().clamp(min=1e-12)
                result[layer.name][level] = float(err)
        hooks.progress(i + 1, len(layers), f"sensitivity of {layer.name}")
    return result


def _header_bytes(fixed_tensors: int, layers: list[Layer]) -> int:
    return HEADER_BYTES_BASE + HEADER_BYTES_PER_TENSOR * (fixed_tensors + 3 * len(layers))


def _size(layer: Layer, index: int, per_channel: bool) -> int:
    return level_bytes(LEVELS[index], layer.out_features, layer.in_features, per_channel=per_channel)


def require_budget(
    layers: list[Layer], *, fixed_bytes: int, fixed_tensors: int, budget_bytes: int, per_channel: bool
) -> int:
    """The smallest reachable size (every layer at the lowest level); fails when over budget."""
    total = fixed_bytes + _header_bytes(fixed_tensors, layers) + sum(_size(x, 0, per_channel) for x in layers)
    if total > budget_bytes:
        raise QuantError(
            f"the size budget of {budget_bytes / MiB:.3f} MB cannot be met: with every layer ternary "
            f"(the smallest level) the model still takes {total / MiB:.3f} MB, of which "
            f"{fixed_bytes / MiB:.3f} MB are embeddings, norms and layers kept as they are. Set the "
            f"size budget to at least {math.ceil(total / MiB * 1000) / 1000:.3f} MB"
        )
    return total


def plan(
    layers: list[Layer],
    sensitivity: dict[str, dict[str, float]],
    *,
    fixed_bytes: int,
    fixed_tensors: int,
    budget_bytes: int,
    per_channel: bool,
) -> dict[str, str]:
    """Greedy: cheapest levels first, then the best loss-reduction-per-byte upgrades that fit."""
    total = require_budget(
        layers,
        fixed_bytes=fixed_bytes,
        fixed_tensors=fixed_tensors,
        budget_bytes=budget_bytes,
        per_channel=per_channel,
    )
    choice = {layer.name: 0 for layer in layers}
    while True:
        best: tuple[float, Layer] | None = None
        for layer in layers:
            index = choice[layer.name]
            if index + 1 >= len(LEVELS):
                continue
            cost = _size(layer, index + 1, per_channel) - _size(layer, index, per_channel)
            if total + cost > budget_bytes:
                continue
            gain = sensitivity[layer.name][LEVELS[index]] - sensitivity[layer.name][LEVELS[index + 1]]
            score = gain / max(cost, 1)
            if best is None or score > best[0]:
                best = (score, layer)
        if best is None:
            return {name: LEVELS[index] for name, index in choice.items()}
        layer = best[1]
        total += _size(layer, choice[layer.name] + 1, per_channel) - _size(
            layer, choice[layer.name], per_channel
        )
        choice[layer.name] += 1


def apply_plan(model: nn.Module, levels: dict[str, str], *, per_channel: bool) -> None:
    for name, level in levels.items():
        set_module(model, name, make_layer(level, model.get_submodule(name), per_channel=per_channel))


def fixed_part(
    model: nn.Module, names: list[str], *, embedding: str | None, per_channel: bool
) -> tuple[int, int]:
    """(bytes, tensor count) of everything but the planned layers' weight matrices, with the
    input embedding counted as it will be stored (int8 rows plus float32 scales)."""
    planned = {f"{name}.weight" for name in names}
    seen: set[tuple] = set()
    total = count = 0
    for key, tensor in model.state_dict().items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in planned or ident in seen:
            continue
        seen.add(ident)
        if embedding and key == f"{embedding}.weight":
            rows = tensor.shape[0]
            total += tensor.numel() + 4 * (rows if per_channel else 1)
            count += 2
            continue
        total += tensor.numel() * tensor.element_size()
        count += 1
    return total, count


def summary(levels: dict[str, str], layers: list[Layer], sensitivity, *, per_channel: bool) -> dict[str, Any]:
    by_name = {layer.name: layer for layer in layers}
    counts = {level: sum(1 for v in levels.values() if v == level) for level in LEVELS}
    return {
        "levels": counts,
        "layers": [
            {
                "name": name,
                "level": level,
                "sensitivity": sensitivity[name],
                "bytes": level_bytes(
                    level, by_name[name].out_features, by_name[name].in_features, per_channel=per_channel
                ),
            }
            for name, level in levels.items()
        ],
    }
