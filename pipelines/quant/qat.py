"""Quantization-aware training for ternary b1.58 with the straight-through estimator.

Post-training ternarization of a normally trained model loses a lot: most weights round to
0 or +/-1 times one scale. QAT swaps each linear layer for ``TernaryQATLinear`` (forward:
ternary weights and int8 activations; backward: gradients pass straight through to float
"latent" weights), trains a few steps on the calibration text so the model adapts to the
coarse grid, then packs the latent weights into ``BitLinear`` layers.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from pipelines.quant.convert import device_of, set_module
from pipelines.quant.hooks import Hooks
from pipelines.quant.layers import BitLinear, TernaryQATLinear

BATCH_SIZE = 8
METRIC_POINTS = 200  # at most this many loss points per run, whatever the step count


def to_qat(model: nn.Module, names: list[str], *, per_channel: bool) -> None:
    for name in names:
        set_module(model, name, TernaryQATLinear(model.get_submodule(name), per_channel=per_channel))


def to_bitlinear(model: nn.Module, names: list[str]) -> None:
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, TernaryQATLinear):
            set_module(model, name, module.to_bitlinear())


def _lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first 10% of steps, then cosine decay to 10% of the rate."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * t))


def train(
    model: nn.Module,
    stream: list[int],
    *,
    steps: int,
    learning_rate: float,
    seq_len: int,
    hooks: Hooks,
    seed: int = 0,
) -> dict[str, Any]:
    """Train every parameter of a model whose linears are ``TernaryQATLinear``; returns the
    loss curve summary. The model's float dtype is kept float32 while training."""
    data = torch.tensor(stream, dtype=torch.long)
    seq_len = min(seq_len, len(data) - 1)
    if seq_len < 2:
        raise ValueError("the training text is too short for quantization-aware training")
    device = device_of(model)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps))
    every = max(1, steps // METRIC_POINTS)
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        hooks.check_cancelled()
        starts = torch.randint(0, len(data) - seq_len, (BATCH_SIZE,), generator=generator)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()]).to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % every == 0 or step == steps - 1:
            hooks.metric("qat_loss", losses[-1], step + 1)
        hooks.progress(
            step + 1, steps, f"quantization-aware training step {step + 1}/{steps}", loss=losses[-1]
        )
    model.eval()
    for p in params:
        p.requires_grad_(False)
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": steps,
        "learning_rate": learning_rate,
        "batch_size": BATCH_SIZE,
        "seq_len": seq_len,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "seconds": round(time.perf_counter() - started, 3),
    }


def bit_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, BitLinear)]
