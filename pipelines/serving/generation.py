"""Local generation with transformers: continuous batching of many requests on one model, with
per-request length, temperature, adapter, streaming and cancellation.

How a batch is decoded (iteration-level scheduling, as vLLM and TGI do it):

- The prompts of requests that join are prefilled (one by one on a CPU, in one padded pass on
  a GPU), each giving its first token.
- Their keys and values then join a running batch: one preallocated buffer per layer (a slab),
  rows right-aligned, so each decode step writes one column in place. transformers'
  ``DynamicCache`` would ``torch.cat`` the whole cache every step.
- A row that ends (end of sequence, its own token budget, its client gone) leaves at once and
  its slot is reused by the next request that joins; between steps ``admit`` may hand over new
  requests, so a request that arrives while a batch runs starts decoding one step later rather
  than after the whole batch.
- Several LoRA adapters on one base model share a batch: each row names its adapter and peft
  applies it to that row only (``adapter_names``). The base model is never reloaded.

Models whose cache is not a plain per-layer key/value cache (sliding windows, state-space
layers) are decoded with ``model.generate`` instead, one batch per adapter.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.serving.protocol import AdapterPin, ServiceError

log = logging.getLogger(__name__)

# Room kept for the answer when a model's context is shorter than prompt + max_tokens.
MIN_ANSWER_TOKENS = 16
# Most rows decoded together; more requests wait for a slot.
MAX_ROWS = 64
# Columns added to the slab when it is full (before that, columns no row uses any more are dropped).
GROW_COLUMNS = 64
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass
class GenJob:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    on_delta: Callable[[str], None]
    cancelled: Callable[[], bool]
    adapter: str | None = None  # None: the base model
    on_finish: Callable[[GenJob], None] | None = None  # called once the job has its finish_reason
    ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    started: float = 0.0
    generation_ms: float = 0.0
    batch_rows: int = 1  # the most requests decoded together while this one was


def _import_torch():
    import torch

    return torch


class LocalGenerator:
    """A causal LM (optionally quantized, optionally with LoRA adapters) and its tokenizer."""

    def __init__(self, model, tokenizer, *, device: str, adapters: list[str]):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.adapters = adapters
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.continuous = _plain_kv_cache(model.config)
        # Prompts that join together are prefilled in one padded pass on a GPU (where one small
        # pass costs about as much as a big one) and one by one on a CPU (compute-bound: padding
        # would only add work).
        self.prefill_together = not str(device).startswith("cpu")
        self.lock = threading.Lock()  # one batch at a time on a model

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

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # --- generation ----------------------------------------------------------------------------

    def generate(
        self,
        jobs: list[GenJob],
        *,
        seed: int | None = None,
        admit: Callable[[int], list[GenJob]] | None = None,
        max_rows: int | None = None,
    ) -> None:
        """Decode the jobs together until every one has its ``text``, ``ids`` and
        ``finish_reason`` (and its ``on_finish`` was called). Between steps, ``admit(room)`` may
        return up to ``room`` more jobs, which join the running batch (at most ``max_rows``,
        default ``MAX_ROWS``, decode together)."""
        for job in jobs:
            self._check_adapter(job.adapter)
        torch = _import_torch()
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        with self.lock, torch.inference_mode():
            if not self.continuous:
                self._generate_whole(jobs, rng)
                return
            batch = _DecodeBatch(self, rng)
            waiting = list(jobs)
            while True:
                room = max(0, (max_rows or MAX_ROWS) - batch.active)
                if admit is not None and room > len(waiting):
                    waiting += admit(room - len(waiting))  # their adapters were checked by the caller
                if waiting and room:
                    batch.join(waiting[:room])
                    waiting = waiting[room:]
                if not batch.active:
                    if not waiting:
                        return
                    continue
                batch.step()

    def _check_adapter(self, name: str | None) -> None:
        if name is not None and name not in self.adapters:
            available = ", ".join(self.adapters) or "none"
            raise ServiceError(f"unknown adapter {name!r}; this service has {available}")

    def _adapter_kwargs(self, names: list[str | None]) -> dict[str, Any]:
        if not self.adapters:
            return {}
        return {"adapter_names": [name or BASE for name in names]}

    def _generate_whole(self, jobs: list[GenJob], rng) -> None:
        """``model.generate`` for models the slab cannot hold: one left-padded batch per adapter."""
        groups: dict[str | None, list[GenJob]] = {}
        for job in jobs:
            groups.setdefault(job.adapter, []).append(job)
        for adapter, group in groups.items():
            with self._only_adapter(adapter):
                _generate_with_transformers(self, group, rng)

    @contextlib.contextmanager
    def _only_adapter(self, name: str | None):
        if not self.adapters:
            yield
        elif name is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(name)
            yield


def _plain_kv_cache(config) -> bool:
    """Whether every layer keeps a plain, growing key/value cache (what the slab holds)."""
    if getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None):
        return False
    layer_types = getattr(config, "layer_types", None)
    return not layer_types or all(kind == "full_attention" for kind in layer_types)


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


# --- the continuous batch ------------------------------------------------------------------------


class _Row:
    def __init__(self, job: GenJob, start: int):
        self.job = job
        self.start = start  # the row's first live column in the slab
        self.position = len(job.prompt_ids)  # position id of the token fed next
        self.next = 0  # the token fed next


class _DecodeBatch:
    """Rows decoding together over one key/value slab per layer.

    ``keys[l]`` and ``values[l]`` are ``(slots, kv_heads, columns, head_dim)``; the first
    ``width`` columns are in use and every live row's last key sits in column ``width - 1``.
    ``mask`` marks each slot's live columns. A slot whose row ended is a hole until a new row
    takes it; holes still go through the model (their mask keeps them harmless), and the slab
    is compacted when half of it is holes.
    """

    def __init__(self, gen: LocalGenerator, rng):
        self.gen, self.rng = gen, rng
        self.torch = _import_torch()
        self.rows: list[_Row | None] = []
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.mask = None
        self.width = 0

    @property
    def active(self) -> int:
        return sum(row is not None for row in self.rows)

    # --- joining ---------------------------------------------------------------------------------

    def join(self, jobs: list[GenJob]) -> None:
        """Prefill the jobs, sample each one's first token, and give the ones that go on a slot."""
        together = self.active + len(jobs)
        for job in jobs:
            job.started = time.perf_counter()
            job.batch_rows = max(job.batch_rows, together)
        if self.gen.prefill_together and len(jobs) > 1:
            prefilled = self._prefill_together(jobs)
        else:
            prefilled = [item for job in jobs for item in self._prefill_alone(job)]
        ready = []
        for job, token, kv in prefilled:
            row = _Row(job, 0)
            if _accept(self.gen, row, token):
                ready.append((row, kv))
        if ready:
            self._place(ready)
        self._note_rows()

    def _prefill_alone(self, job: GenJob):
        """One prompt, no padding: on a CPU, where prefill is compute-bound, the cheapest way."""
        from transformers import DynamicCache

        torch, gen = self.torch, self.gen
        cache = DynamicCache()
        out = gen.model(
            input_ids=torch.tensor([job.prompt_ids], dtype=torch.long, device=gen.device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            **gen._adapter_kwargs([job.adapter]),
        )
        token = _sample(torch, out.logits[:, -1], [job.temperature], self.rng)[0]
        yield job, token, [(layer.keys, layer.values) for layer in cache.layers]

    def _prefill_together(self, jobs: list[GenJob]):
        """All prompts in one left-padded forward: on a GPU, one pass instead of many. Left
        padding leaves each row's keys right-aligned, as the slab keeps them."""
        from transformers import DynamicCache

        torch, gen = self.torch, self.gen
        ids, mask = _left_padded(torch, jobs, gen.pad)
        width = ids.shape[1]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = gen.model(
            input_ids=ids.to(gen.device),
            attention_mask=mask.to(gen.device),
            position_ids=positions.to(gen.device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            **gen._adapter_kwargs([job.adapter for job in jobs]),
        )
        tokens = _sample(torch, out.logits[:, -1], [job.temperature for job in jobs], self.rng)
        for row, job in enumerate(jobs):
            begin = width - len(job.prompt_ids)
            kv = [
                (layer.keys[row : row + 1, :, begin:], layer.values[row : row + 1, :, begin:])
                for layer in cache.layers
            ]
            yield job, tokens[row], kv

    def _place(self, ready: list[tuple[_Row, list[tuple[Any, Any]]]]) -> None:
        longest = max(kv[0][0].shape[-2] for _, kv in ready)
        holes = [slot for slot, row in enumerate(self.rows) if row is None]
        missing = max(0, len(ready) - len(holes))
        width = max(self.width, longest)
        if missing or width > self.width or not self.keys:
            self._rebuild(keep=range(len(self.rows)), extra=missing, width=width, first=ready[0][1])
            holes = [slot for slot, row in enumerate(self.rows) if row is None]
        for (row, kv), slot in zip(ready, holes, strict=False):
            length = kv[0][0].shape[-2]
            begin = self.width - length
            for layer, (k, v) in enumerate(kv):
                self.keys[layer][slot, :, begin : self.width] = k[0]
                self.values[layer][slot, :, begin : self.width] = v[0]
            self.mask[slot].zero_()
            self.mask[slot, begin : self.width] = 1
            row.start = begin
            self.rows[slot] = row

    def _rebuild(self, *, keep, extra: int = 0, width: int | None = None, cut: int = 0, first=None) -> None:
        """New buffers holding the ``keep`` slots plus ``extra`` empty ones, the columns from
        ``cut`` on, right-aligned to ``width`` columns, with room to grow."""
        torch = self.torch
        keep = list(keep)
        used = self.width - cut
        width = max(width or 0, used)
        shift = width - used  # where old column `cut` lands
        columns = width + GROW_COLUMNS
        slots = len(keep) + extra
        template = self.keys or [k for k, _ in first]
        index = torch.tensor(keep, dtype=torch.long, device=template[0].device)
        new_keys, new_values = [], []
        for layer, sample in enumerate(template):
            shape = (slots, sample.shape[1], columns, sample.shape[-1])
            k = sample.new_zeros(shape)
            v = sample.new_zeros(shape)
            if keep and used:
                k[: len(keep), :, shift:width] = self.keys[layer].index_select(0, index)[
                    :, :, cut : self.width
                ]
                v[: len(keep), :, shift:width] = self.values[layer].index_select(0, index)[
                    :, :, cut : self.width
                ]
            new_keys.append(k)
            new_values.append(v)
        mask = torch.zeros((slots, columns), dtype=torch.long, device=template[0].device)
        if keep and used:
            mask[: len(keep), shift:width] = self.mask.index_select(0, index)[:, cut : self.width]
        rows = [self.rows[slot] for slot in keep] + [None] * extra
        for row in rows:
            if row is not None:
                row.start = row.start - cut + shift
        self.keys, self.values, self.mask, self.rows, self.width = new_keys, new_values, mask, rows, width

    # --- decoding --------------------------------------------------------------------------------

    def step(self) -> None:
        from transformers.cache_utils import Cache

        torch, gen = self.torch, self.gen
        if self.width >= self.mask.shape[1]:
            self._make_room()
        device = self.mask.device
        tokens = torch.tensor(
            [[r.next if r else gen.pad] for r in self.rows], dtype=torch.long, device=device
        )
        positions = torch.tensor(
            [[r.position if r else 0] for r in self.rows], dtype=torch.long, device=device
        )
        column = self.width
        self.mask[:, column] = 1  # holes attend to their own column: no all-masked row
        slab = _slab_layer_class()
        cache = Cache(layers=[slab(k, v, column) for k, v in zip(self.keys, self.values, strict=True)])
        out = gen.model(
            input_ids=tokens,
            attention_mask=self.mask[:, : column + 1],
            position_ids=positions,
            cache=cache,
            use_cache=True,
            **gen._adapter_kwargs([r.job.adapter if r else None for r in self.rows]),
        )
        self.width = column + 1
        temperatures = [r.job.temperature if r else 0.0 for r in self.rows]
        picks = _sample(torch, out.logits[:, -1], temperatures, self.rng)
        for slot, row in enumerate(self.rows):
            if row is None:
                continue
            row.position += 1
            if not _accept(gen, row, picks[slot]):
                self.rows[slot] = None
                self.mask[slot, : self.width] = 0
        live = [slot for slot, row in enumerate(self.rows) if row is not None]
        if not live:
            self.rows, self.keys, self.values, self.mask, self.width = [], [], [], None, 0
        elif len(live) * 2 <= len(self.rows):
            self._rebuild(keep=live, cut=min(self.rows[slot].start for slot in live))

    def _make_room(self) -> None:
        """The slab is full: drop the leading columns no live row uses, and grow it."""
        live = [slot for slot, row in enumerate(self.rows) if row is not None]
        cut = min(self.rows[slot].start for slot in live)
        self._rebuild(keep=range(len(self.rows)), cut=cut)
        for slot, row in enumerate(self.rows):
            if row is None:
                self.mask[slot].zero_()

    def _note_rows(self) -> None:
        rows = self.active
        for row in self.rows:
            if row is not None and row.job.batch_rows < rows:
                row.job.batch_rows = rows


@functools.cache
def _slab_layer_class():
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """A layer cache over a preallocated buffer: ``update`` writes the new column in place
        and answers views, never a concatenated copy."""

        def __init__(self, keys, values, width: int):
            super().__init__()
            self.is_initialized = True
            self.buffer_keys, self.buffer_values, self.width = keys, values, width
            self.keys, self.values = keys[:, :, :width], values[:, :, :width]
            self.device = keys.device

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.width + key_states.shape[-2]
            self.buffer_keys[:, :, self.width : end] = key_states
            self.buffer_values[:, :, self.width : end] = value_states
            self.width = end
            self.keys, self.values = self.buffer_keys[:, :, :end], self.buffer_values[:, :, :end]
            return self.keys, self.values

    return SlabLayer


def _left_padded(torch, jobs: list[GenJob], pad: int):
    """(input ids, attention mask) of the prompts, padded on the left to the longest."""
    width = max(len(job.prompt_ids) for job in jobs)
    ids = torch.full((len(jobs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(jobs), width), dtype=torch.long)
    for row, job in enumerate(jobs):
        ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids, dtype=torch.long)
        mask[row, width - len(job.prompt_ids) :] = 1
    return ids, mask


# --- tokens in, text out --------------------------------------------------------------------------


def _sample(torch, logits, temperatures: list[float], rng) -> list[int]:
    """Greedy for rows at temperature 0, sampled at their own temperature for the others."""
    picks = logits.argmax(dim=-1)
    hot = [row for row, t in enumerate(temperatures) if t > 0]
    if hot:
        index = torch.tensor(hot, dtype=torch.long, device=logits.device)
        temps = torch.tensor([temperatures[row] for row in hot], dtype=torch.float32, device=logits.device)
        probs = torch.softmax(logits.index_select(0, index).float() / temps[:, None], dim=-1).nan_to_num(0.0)
        probs[probs.sum(dim=-1) <= 0] = 1.0  # a row of -inf scores: any token
        chosen = torch.multinomial(probs.cpu(), 1, generator=rng).flatten()
        picks = picks.clone()
        picks[index] = chosen.to(picks.device)
    return picks.tolist()


def _accept(gen: LocalGenerator, row: _Row, token: int) -> bool:
    """Take a row's new token; False when the row has ended (its job is finished)."""
    job = row.job
    if token in gen.eos:
        _finish(gen, job, "stop")
        return False
    job.ids.append(token)
    _stream(gen, job)
    if len(job.ids) >= job.max_new_tokens:
        _finish(gen, job, "length")
        return False
    if job.cancelled():
        _finish(gen, job, "cancelled")
        return False
    row.next = token
    return True


def _stream(gen: LocalGenerator, job: GenJob) -> None:
    text = gen.decode(job.ids)
    # A multi-byte character split across tokens decodes to U+FFFD until its last piece.
    if text.endswith("\ufffd") or len(text) <= len(job.text):
        return
    delta, job.text = text[len(job.text) :], text
    job.on_delta(delta)


def _finish(gen: LocalGenerator, job: GenJob, reason: str) -> None:
    """Flush held-back text, name why the job ended, and tell its owner."""
    if job.finish_reason is not None:
        return
    text = gen.decode(job.ids)
    if len(text) > len(job.text) and text.startswith(job.text):
        job.on_delta(text[len(job.text) :])
    job.text = text
    job.finish_reason = reason
    job.generation_ms = (time.perf_counter() - job.started) * 1000 if job.started else 0.0
    if job.on_finish is not None:
        try:
            job.on_finish(job)
        except Exception:  # noqa: BLE001 - one client's failure must not stop the batch
            log.warning("could not deliver a finished answer", exc_info=True)


# --- model.generate, for caches the slab cannot hold ------------------------------------------------


def _generate_with_transformers(gen: LocalGenerator, jobs: list[GenJob], rng) -> None:
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    torch = _import_torch()
    started = time.perf_counter()
    input_ids, attention = _left_padded(torch, jobs, gen.pad)
    for job in jobs:
        job.started, job.batch_rows = started, len(jobs)
    config = GenerationConfig(
        max_new_tokens=max(j.max_new_tokens for j in jobs),
        do_sample=False,
        num_beams=1,
        pad_token_id=gen.pad,
        eos_token_id=sorted(gen.eos) or None,
    )
    rows = [_Row(job, 0) for job in jobs]
    done = [False] * len(jobs)
    temperatures = [j.temperature for j in jobs]

    def sampler(_input_ids, scores):
        """Leave only each row's own pick selectable, so the greedy search takes it."""
        picks = _sample(torch, scores, temperatures, rng)
        chosen = torch.full_like(scores, float("-inf"))
        chosen[torch.arange(len(picks)), torch.tensor(picks)] = 0.0
        return chosen

    def tracker(ids, _scores, **_kwargs):
        last = ids[:, -1].tolist()
        for row, token in enumerate(last):
            if not done[row]:
                done[row] = not _accept(gen, rows[row], int(token))
        return torch.tensor(done, dtype=torch.bool, device=ids.device)

    gen.model.generate(
        input_ids=input_ids.to(gen.device),
        attention_mask=attention.to(gen.device),
        generation_config=config,
        logits_processor=LogitsProcessorList([sampler]),
        stopping_criteria=StoppingCriteriaList([tracker]),
    )
    for job in jobs:
        _finish(gen, job, "length" if len(job.ids) >= job.max_new_tokens else "stop")
