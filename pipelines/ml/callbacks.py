"""The TrainerCallback that turns training into progress events and metric series."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from pipelines.ml.metrics import MemoryTracker

PROGRESS_EVERY_S = 0.5


class NodeProgressCallback(TrainerCallback):
    """Reports step, epoch, loss, learning rate, tokens/s, peak memory and ETA.

    ``ctx.progress`` goes out at most every ``PROGRESS_EVERY_S`` (and at the last step): a tiny
    model does dozens of steps a second, and progress that carries metrics is stored even when
    the engine's throttle drops it. ``ctx.metric`` runs on every logging step, so the loss curve
    gets every logged point. The cancel check runs every step: a cancelled run stops within one
    step (the engine keeps that check cheap).
    """

    def __init__(self, ctx, memory: MemoryTracker):
        self.ctx, self.memory = ctx, memory
        self.losses: list[tuple[int, float]] = []
        self.learning_rates: list[tuple[int, float]] = []
        self.started = 0.0
        self.start_step = 0
        self.start_tokens = 0
        self.resumed_from = 0
        self.last_loss: float | None = None
        self.last_progress = float("-inf")

    def on_train_begin(self, args, state, control, **kwargs: Any):
        self.started = time.perf_counter()
        self.start_step = self.resumed_from = state.global_step
        self.start_tokens = state.num_input_tokens_seen or 0

    def tokens_per_second(self, state) -> float:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return ((state.num_input_tokens_seen or 0) - self.start_tokens) / elapsed

    def on_step_end(self, args, state, control, **kwargs: Any):
        self.ctx.check_cancelled()
        now = time.perf_counter()
        if now - self.last_progress < PROGRESS_EVERY_S and state.global_step < state.max_steps:
            return
        self.last_progress = now
        elapsed = now - self.started
        done = state.global_step - self.start_step
        eta = (state.max_steps - state.global_step) * elapsed / done if done else None
        metrics = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 3),
            "tokens_per_s": round(self.tokens_per_second(state), 1),
            "peak_memory_mb": round(self.memory.current_peak() / 2**20, 1),
        }
        if eta is not None:
            metrics["eta_s"] = round(eta, 1)
        if self.last_loss is not None:
            metrics["loss"] = self.last_loss
        self.ctx.progress(
            state.global_step,
            state.max_steps,
            f"step {state.global_step}/{state.max_steps} · epoch {state.epoch or 0:.2f}",
            **metrics,
        )

    def on_log(self, args, state, control, logs: dict[str, float] | None = None, **kwargs: Any):
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = round(float(logs["loss"]), 5)
            self.losses.append((state.global_step, self.last_loss))
            self.ctx.metric("loss", self.last_loss, step=state.global_step)
        if "learning_rate" in logs:
            lr = float(logs["learning_rate"])
            self.learning_rates.append((state.global_step, lr))
            self.ctx.metric("learning_rate", lr, step=state.global_step)
