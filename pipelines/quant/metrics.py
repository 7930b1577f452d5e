"""What the report measures: bytes, bits per weight, per-layer error, perplexity, speed."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.quant.backends import dynamic_state, is_dynamic_linear
from pipelines.quant.convert import device_of

PERPLEXITY_MAX_TOKENS = 4096
GENERATION_PROMPT = "The platform lets you"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """bitsandbytes logs on every int8 matmul that it casts its inputs to float16."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# -- tokens ---------------------------------------------------------------------------------


def token_stream(tokenizer, texts: list[str], max_tokens: int) -> list[int]:
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"] + ([eos] if eos is not None else []))
        if len(ids) >= max_tokens:
            break
    return ids[:max_tokens]


def context_length(model: nn.Module, wanted: int = 128) -> int:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or wanted
    return max(8, min(wanted, int(limit)))


def windows(ids: list[int], seq_len: int) -> list[torch.Tensor]:
    """Consecutive windows of ``seq_len`` tokens (a shorter tail is kept when it has 2+)."""
    out = [torch.tensor(ids[i : i + seq_len]) for i in range(0, len(ids), seq_len)]
    return [w for w in out if len(w) >= 2]


def batches(ids: list[int], seq_len: int, batch_size: int = 8) -> list[torch.Tensor]:
    """Full windows stacked into batches; the tail window alone when it is all there is."""
    wins = windows(ids, seq_len)
    full = [w for w in wins if len(w) == seq_len] or wins[:1]
    return [torch.stack(full[i : i + batch_size]) for i in range(0, len(full), batch_size)]


# -- quality and speed ------------------------------------------------------------------------


@torch.inference_mode()
def perplexity(
    model: nn.Module, tokenizer, texts: list[str], *, max_tokens: int = PERPLEXITY_MAX_TOKENS
) -> float:
    """exp(mean negative log-likelihood per predicted token) over the texts."""
    ids = token_stream(tokenizer, texts, max_tokens)
    total_nll, total_tokens = 0.0, 0
    device = device_of(model)
    with quiet():
        for window in windows(ids, context_length(model)):
            batch = window.unsqueeze(0).to(device)
            loss = model(input_ids=batch, labels=batch).loss
            total_nll += float(loss) * (batch.shape[1] - 1)
            total_tokens += batch.shape[1] - 1
    if not total_tokens:
        raise ValueError("the held-out text is too short to measure perplexity (fewer than 2 tokens)")
    return math.exp(total_nll / total_tokens)


@torch.inference_mode()
def calibration_loss(model: nn.Module, batch_list: list[torch.Tensor]) -> float:
    device = device_of(model)
    losses = [float(model(input_ids=b.to(device), labels=b.to(device)).loss) for b in batch_list]
    return sum(losses) / max(1, len(losses))


@torch.inference_mode()
def tokens_per_second(
    model: nn.Module, tokenizer, *, new_tokens: int = 32, prompt: str = GENERATION_PROMPT
) -> float:
    """Greedy generation speed with the KV cache, after one short warm-up run."""
    device = device_of(model)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = dict(do_sample=False, pad_token_id=pad, attention_mask=torch.ones_like(ids))
    with quiet():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)
        _sync(device)
        started = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        _sync(device)
    produced = out.shape[1] - ids.shape[1]
    return produced / max(time.perf_counter() - started, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with quiet():
        return model(input_ids=ids.to(device_of(model))).logits.float().cpu()


# -- sizes -------------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return sorted(folder.glob("*.safetensors"))


def folder_weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in weight_files(folder))


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def module_storage_bytes(module: nn.Module) -> int:
    """Bytes a quantized layer stores for its weight: codes plus scales / zero points / quant
    state, without the bias."""
    weight = getattr(module, "weight", None)
    if hasattr(weight, "qdata"):  # torchao Int8Tensor
        parts = [weight.qdata, weight.scale, getattr(weight, "zero_point", None)]
        return sum(tensor_bytes(p) for p in parts if isinstance(p, torch.Tensor))
    if is_dynamic_linear(module):
        return sum(tensor_bytes(t) for k, t in dynamic_state(module).items() if k != "bias")
    return sum(
        tensor_bytes(t) for k, t in module.state_dict().items() if isinstance(t, torch.Tensor) and k != "bias"
    )


def weight_shape(module: nn.Module) -> tuple[int, int] | None:
    if hasattr(module, "num_embeddings"):
        return int(module.num_embeddings), int(module.embedding_dim)
    out_f, in_f = getattr(module, "out_features", None), getattr(module, "in_features", None)
    return (int(out_f), int(in_f)) if out_f and in_f else None


# -- per-layer error ----------------------------------------------------------------------------


def dequantized_weight(module: nn.Module) -> torch.Tensor | None:
    """The float weight a quantized layer actually computes with, whatever its backend."""
    if hasattr(module, "dequantized_weight"):
        return module.dequantized_weight(torch.float32)
    if is_dynamic_linear(module):
        return module.weight().dequantize().float()
    weight = getattr(module, "weight", None)
    if weight is None:
        return None
    if hasattr(weight, "qdata"):
        return weight.dequantize().float()
    if hasattr(weight, "quant_state") and weight.quant_state is not None:  # bitsandbytes 4-bit
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, weight.quant_state).float()
    if getattr(weight, "SCB", None) is not None or getattr(module.state, "SCB", None) is not None:
        scb = weight.SCB if getattr(weight, "SCB", None) is not None else module.state.SCB
        return weight.data.float() * scb.float().unsqueeze(1) / 127.0  # LLM.int8(): row absmax / 127
    return weight.detach().float()


class OriginalWeights:
    """Reads the unquantized weights tensor by tensor from the input folder's safetensors."""

    def __init__(self, folder: Path):
        self.files = weight_files(folder)

    def get(self, key: str) -> torch.Tensor | None:
        from safetensors import safe_open

        for path in self.files:
            with safe_open(str(path), framework="pt") as handle:
                if key in handle.keys():  # noqa: SIM118 - safe_open has keys(), not __contains__
                    return handle.get_tensor(key).float()
        return None


def per_layer_report(
    model: nn.Module, names: list[str], original: OriginalWeights | None
) -> list[dict[str, Any]]:
    """For each quantized layer: stored bits per weight and the relative error
    ||W - W'|| / ||W|| against the original weights (when they can be read)."""
    rows = []
    for name in names:
        module = model.get_submodule(name)
        shape = weight_shape(module)
        numel = shape[0] * shape[1] if shape else None
        kind = "embedding" if hasattr(module, "num_embeddings") else "linear"
        row: dict[str, Any] = {"name": name, "type": type(module).__name__, "kind": kind, "params": numel}
        if numel:
            row["bits_per_weight"] = round(module_storage_bytes(module) * 8 / numel, 3)
        ref = original.get(f"{name}.weight") if original else None
        deq = dequantized_weight(module)
        if ref is not None and deq is not None and ref.shape == deq.shape:
            row["relative_error"] = float((ref - deq.cpu()).norm() / ref.norm().clamp(min=1e-12))
        rows.append(row)
    return rows
