"""Which modules of a model get quantized, and swapping them in place."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from pipelines.quant.layers import QuantEmbedding


def matches(name: str, patterns: list[str]) -> bool:
    """A pattern names a module by its full dotted name, by its last parts ("lm_head",
    "mlp.down_proj") or by a run of parts anywhere ("layers.0", "*.q_proj"), so "layers.1"
    matches "model.layers.1.mlp.up_proj" but not "model.layers.11.mlp.up_proj"."""
    return any(
        fnmatchcase(name, p)
        or fnmatchcase(name, f"*.{p}")
        or fnmatchcase(name, f"{p}.*")
        or fnmatchcase(name, f"*.{p}.*")
        for p in patterns
    )


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def tied_embeddings(model: nn.Module) -> bool:
    """Input and output embeddings share one tensor (e.g. Qwen, Gemma): they are quantized
    together or not at all."""
    inp, out = _input_embedding(model), _output_layer(model)
    return (
        isinstance(inp, nn.Embedding)
        and isinstance(out, nn.Linear)
        and inp.weight.data_ptr() == out.weight.data_ptr()
    )


def _input_embedding(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_input_embeddings", None)
    return getter() if getter else None


def _output_layer(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if getter else None


def module_name(model: nn.Module, module: nn.Module | None) -> str | None:
    return next((n for n, m in model.named_modules() if m is module), None) if module is not None else None


def quantizable_linears(model: nn.Module, skip: list[str]) -> list[str]:
    """Names of the nn.Linear layers to quantize (not skipped, not a tied output layer)."""
    tied_head = module_name(model, _output_layer(model)) if tied_embeddings(model) else None
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name != tied_head and not matches(name, skip)
    ]


def all_linears(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def quantizable_embedding(model: nn.Module, skip: list[str]) -> str | None:
    """The input embedding's name when it should be stored in int8: not skipped, and, when it
    is tied to the output layer, that layer is not skipped either."""
    emb = _input_embedding(model)
    if not isinstance(emb, nn.Embedding):
        return None
    name = module_name(model, emb)
    if name is None or matches(name, skip):
        return None
    if tied_embeddings(model):
        head = module_name(model, _output_layer(model))
        if head is None or matches(head, skip):
            return None
    return name


class TiedLMHead(nn.Module):
    """The output layer of a tied model, reading the quantized input embedding's weights
    (stored once, under the embedding's name)."""

    kind = "tied"

    def __init__(self, source: QuantEmbedding, source_name: str):
        super().__init__()
        object.__setattr__(self, "_source", source)  # not a submodule: no second copy in state_dict
        self.source_name = source_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self._source.dequantized_weight(x.dtype))

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._source.dequantized_weight(dtype)

    def quant_config(self) -> dict[str, Any]:
        return {"type": self.kind, "source": self.source_name}


def quantize_embedding(
    model: nn.Module, name: str, *, symmetric: bool = True, per_channel: bool = True
) -> dict[str, nn.Module]:
    """Swap the input embedding for int8 rows (and a tied output layer for a view of them)."""
    tied = tied_embeddings(model)
    head_name = module_name(model, _output_layer(model)) if tied else None
    emb = get_module(model, name)
    qemb = QuantEmbedding.from_embedding(emb, symmetric=symmetric, per_channel=per_channel)
    set_module(model, name, qemb)
    swapped: dict[str, nn.Module] = {name: qemb}
    if head_name is not None:
        head = TiedLMHead(qemb, name)
        set_module(model, head_name, head)
        swapped[head_name] = head
    return swapped


def quantized_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every module that describes itself with ``quant_config()``, by name."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "quant_config") and name}


def observe_input_ranges(
    model: nn.Module, names: list[str], batches: list[torch.Tensor]
) -> dict[str, list[float]]:
    """Run calibration batches and record each named layer's input [min, max] (a min/max
    observer, as PyTorch's MinMaxObserver)."""
    ranges: dict[str, list[float]] = {}
    handles = []

    def hook_for(layer_name: str):
        def hook(_module, args):
            x = args[0].detach()
            low, high = float(x.min()), float(x.max())
            old = ranges.get(layer_name)
            ranges[layer_name] = [min(low, old[0]), max(high, old[1])] if old else [low, high]

        return hook

    for name in names:
        handles.append(get_module(model, name).register_forward_pre_hook(hook_for(name)))
    try:
        with torch.no_grad():
            for batch in batches:
                model(input_ids=batch.to(device_of(model)))
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
