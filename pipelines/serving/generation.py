"""Local generation with transformers: one batched ``generate`` for many requests, with
per-request length, temperature, streaming and cancellation, and several LoRA adapters on
one base model (switched with ``set_adapter``, never reloaded).

Why not ``TextIteratorStreamer``: it streams one sequence only. A batch is streamed by a
stopping criterion that transformers calls after every step with the whole batch: it sends
each row's new text to that row's sink, and stops a row (returns True for it) when its own
token budget is spent or its client went away, so one disconnect frees its share of the
batch at once and a whole batch of disconnects ends ``generate``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.serving.protocol import AdapterPin, ServiceError

# Room kept for the answer when a model's context is shorter than prompt + max_tokens.
MIN_ANSWER_TOKENS = 16


@dataclass
class GenJob:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    on_delta: Callable[[str], None]
    cancelled: Callable[[], bool]
    ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


def _import_torch():
    import torch

    return torch


class LocalGenerator:
    """A causal LM (optionally quantized, optionally with LoRA adapters) and its tokenizer."""

    def __init__(self, model, tokenizer, *, device: str, adapters: list[str]):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.adapters = adapters
        self.tokenizer.padding_side = "left"  # new tokens follow every row's prompt directly
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.lock = threading.Lock()  # generate() and set_adapter() are not thread-safe

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: Path, *, device: str, adapters: list[tuple[AdapterPin, Path]]) -> LocalGenerator:
        from pipelines.ml.loading import LoadOptions, load_model, load_tokenizer

        folder = Path(folder)
        full = [path for pin, path in adapters if pin.format == "full_model"]
        if full:
            if len(adapters) > 1:
                raise ServiceError("a fully fine-tuned model cannot be combined with other adapters")
            folder, adapters = full[0], []
        if (folder / "quantization_config.json").is_file():  # saved by the quantize node
            from pipelines.quant.io import load_quantized

            model = load_quantized(folder, device=device)
        else:
            model = load_model(folder, LoadOptions(device=device))
        model.eval()
        tokenizer = load_tokenizer(folder)
        names = []
        if adapters:
            model, names = _with_adapters(model, adapters)
        return cls(model, tokenizer, device=device, adapters=names)

    # --- prompts -------------------------------------------------------------------------------

    def wrap(self, prompt: str) -> str:
        """The text the model reads: the chat template when the tokenizer has one (as train.lora
        formats its examples), else the prompt itself."""
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, prompt: str) -> list[int]:
        text = self.wrap(prompt)
        return list(self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: max(0, tokens)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def budget(self, max_new_tokens: int) -> tuple[int, int]:
        """(prompt tokens allowed, answer tokens allowed) within the model's context."""
        answer = max(1, min(max_new_tokens, self.context - MIN_ANSWER_TOKENS))
        return max(MIN_ANSWER_TOKENS, self.context - answer), answer

    # --- generation ----------------------------------------------------------------------------

    def generate(self, jobs: list[GenJob], *, adapter: str | None, seed: int | None = None) -> None:
        """Run the jobs as one batch; each job's ``text``, ``ids`` and ``finish_reason`` are set."""
        torch = _import_torch()
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else next(iter(self.eos), 0)
        )
        width = max(len(j.prompt_ids) for j in jobs)
        input_ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        attention = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            input_ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids, dtype=torch.long)
            attention[row, width - len(job.prompt_ids) :] = 1
        config = GenerationConfig(
            max_new_tokens=max(j.max_new_tokens for j in jobs),
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=sorted(self.eos) or None,
        )
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        tracker = _BatchTracker(jobs, self, width)
        sampler = _RowSampler([j.temperature for j in jobs], generator)
        with self.lock, self._adapter(adapter), torch.inference_mode():
            self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        tracker.finish_all()

    @contextlib.contextmanager
    def _adapter(self, name: str | None):
        if not self.adapters:
            yield
        elif name is None:
            with self.model.disable_adapter():
                yield
        else:
            if name not in self.adapters:
                raise ServiceError(f"unknown adapter {name!r}; this service has {', '.join(self.adapters)}")
            self.model.set_adapter(name)
            yield

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _with_adapters(model, adapters: list[tuple[AdapterPin, Path]]):
    """Wrap the base with every adapter loaded once under its own name (peft multi-adapter)."""
    from peft import PeftModel

    first_pin, first_path = adapters[0]
    try:
        wrapped = PeftModel.from_pretrained(
            model, str(first_path), adapter_name=first_pin.name, is_trainable=False
        )
        for pin, path in adapters[1:]:
            wrapped.load_adapter(str(path), adapter_name=pin.name, is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ServiceError(f"could not load the adapters onto the model: {exc}") from exc
    wrapped.eval()
    return wrapped, [pin.name for pin, _ in adapters]


class _RowSampler:
    """Per-row temperature. ``generate`` runs greedy; for rows with a temperature this
    processor samples the token itself and leaves only it selectable, so one batch mixes
    deterministic and sampled rows."""

    def __init__(self, temperatures: list[float], generator):
        torch = _import_torch()
        self.temps = torch.tensor(temperatures, dtype=torch.float32)
        self.rows = (self.temps > 0).nonzero().flatten()
        self.generator = generator

    def __call__(self, input_ids, scores):
        if not len(self.rows):
            return scores
        torch = _import_torch()
        rows = self.rows.to(scores.device)
        logits = scores[rows].float() / self.temps.to(scores.device)[rows, None]
        probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)
        probs[probs.sum(dim=-1) <= 0] = 1.0  # a row of -inf scores: any token
        picks = torch.multinomial(probs.cpu(), 1, generator=self.generator).to(scores.device)
        chosen = torch.full_like(scores[rows], float("-inf"))
        chosen.scatter_(1, picks, 0.0)
        scores = scores.clone()
        scores[rows] = chosen
        return scores


class _BatchTracker:
    """The stopping criterion: streams each row's new text and decides per row when to stop."""

    def __init__(self, jobs: list[GenJob], generator: LocalGenerator, width: int):
        self.jobs, self.gen, self.width = jobs, generator, width
        self.done = [False] * len(jobs)

    def __call__(self, input_ids, scores, **kwargs: Any):
        torch = _import_torch()
        last = input_ids[:, -1].tolist()
        for row, job in enumerate(self.jobs):
            if self.done[row]:
                continue
            token = int(last[row])
            if token in self.gen.eos:
                self._finish(row, "stop")
                continue
            job.ids.append(token)
            self._stream(job)
            if len(job.ids) >= job.max_new_tokens:
                self._finish(row, "length")
            elif job.cancelled():
                self._finish(row, "cancelled")
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _stream(self, job: GenJob) -> None:
        text = self.gen.decode(job.ids)
        # A multi-byte character split across tokens decodes to U+FFFD until its last piece.
        if text.endswith("\ufffd") or len(text) <= len(job.text):
            return
        delta, job.text = text[len(job.text) :], text
        job.on_delta(delta)

    def _finish(self, row: int, reason: str) -> None:
        job = self.jobs[row]
        self.done[row] = True
        job.finish_reason = job.finish_reason or reason

    def finish_all(self) -> None:
        """After generate(): flush held-back text and name why each row ended."""
        for row, job in enumerate(self.jobs):
            text = self.gen.decode(job.ids)
            if len(text) > len(job.text) and text.startswith(job.text):
                job.on_delta(text[len(job.text) :])
            job.text = text
            if not self.done[row]:
                self._finish(row, "length" if len(job.ids) >= job.max_new_tokens else "stop")
