"""The bundled offline demo model: a small Llama with a locally trained BPE tokenizer.

``build_demo_model`` trains a byte-level BPE tokenizer on the shipped corpus, builds a
``LlamaForCausalLM`` from a config, pre-trains it briefly on the same corpus (so it generates
words, not noise) and saves both with ``save_pretrained``. The folder is then loaded through
the same ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` path a hub model takes.
Tests call it with a smaller ``DemoConfig`` to get a real model in seconds.

Run as ``python -m pipelines.ml.demo [--out DIR] [--force]`` (the ``llmops demo-model``
command does that, so the CLI process itself never imports torch).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.ml.datasets import DATA_DIR

CORPUS_PATH = DATA_DIR / "corpus.txt"
MARKER = "demo.json"  # written last: a folder without it is an interrupted build

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
# Messages as "<|role|>\ncontent</s>\n"; the template starts with the BOS token, so callers that
# tokenize the rendered text pass add_special_tokens=False (the usual Llama convention).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class DemoConfig:
    """Shape and pre-training budget. Every projection width is a multiple of 32, because
    bitsandbytes' CPU 4-bit kernels need quantized layers' output widths to be."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 2048
    max_position_embeddings: int = 512
    steps: int = 300
    seq_len: int = 64
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "vocab_size"):
            if getattr(self, name) % 32:
                raise ValueError(f"{name} must be a multiple of 32, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")


def corpus_lines(path: Path = CORPUS_PATH) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def is_built(path: Path) -> bool:
    return (Path(path) / MARKER).is_file() and (Path(path) / "config.json").is_file()


def train_tokenizer(lines: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (no unknown tokens) with BOS added and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(lines, trainer=trainer)
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",  # noqa: S106 - token names, not secrets
        eos_token="</s>",  # noqa: S106
        pad_token="<pad>",  # noqa: S106
        unk_token="<unk>",  # noqa: S106
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(config: DemoConfig, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(model_config)


def _token_stream(tokenizer, lines: list[str]) -> list[int]:
    ids: list[int] = []
    for line in lines:
        ids.extend(tokenizer(line)["input_ids"] + [tokenizer.eos_token_id])
    return ids


def pretrain(model, stream: list[int], config: DemoConfig, progress: Callable[..., None] | None = None):
    """Next-token training on random windows of the corpus; returns (first, last) loss."""
    import torch

    data = torch.tensor(stream, dtype=torch.long)
    if config.steps <= 0 or len(data) <= config.seq_len + 1:
        return None, None
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, config.steps // 10)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, config.steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    first = last = None
    for step in range(config.steps):
        starts = torch.randint(0, len(data) - config.seq_len - 1, (config.batch_size,), generator=generator)
        batch = torch.stack([data[s : s + config.seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        last = loss.item()
        first = last if first is None else first
        if progress is not None and (step % 20 == 0 or step == config.steps - 1):
            progress(step + 1, config.steps, f"pre-training step {step + 1}/{config.steps}", loss=last)
    model.eval()
    return first, last


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Two workers asked for the demo at once: one builds, the other waits and reuses it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_demo_model(
    out_dir: str | Path,
    config: DemoConfig | None = None,
    *,
    lines: list[str] | None = None,
    force: bool = False,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the demo model in ``out_dir``; returns the build info in ``demo.json``."""
    out = Path(out_dir).resolve()
    config = config or DemoConfig()
    with _build_lock(out):
        if is_built(out) and not force:
            return json.loads((out / MARKER).read_text())
        return _build(out, config, lines or corpus_lines(), progress)


def _build(out: Path, config: DemoConfig, lines: list[str], progress) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    tokenizer = train_tokenizer(lines, config.vocab_size)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size {config.vocab_size}")
    tokenizer.model_max_length = config.max_position_embeddings
    model = make_model(config, tokenizer)
    from pipelines.ml.metrics import cpu_threads

    with torch.random.fork_rng(), cpu_threads("cpu"):
        torch.manual_seed(config.seed)
        first, last = pretrain(model, _token_stream(tokenizer, lines), config, progress)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {
        "name": "demo",
        "architecture": "LlamaForCausalLM",
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_vocab": len(tokenizer),
        "corpus_sentences": len(lines),
        "first_loss": first,
        "final_loss": last,
        "build_seconds": round(time.perf_counter() - started, 2),
        "config": asdict(config),
    }
    (tmp / MARKER).write_text(json.dumps(info, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return info


def main(argv: list[str] | None = None) -> int:
    import logging

    # torchao (imported by transformers) warns that its CUDA kernels do not load on a CPU-only torch.
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m pipelines.ml.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/models/demo", help="folder to write (default: var/models/demo)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder holds a demo model")
    parser.add_argument("--steps", type=int, default=DemoConfig.steps, help="pre-training steps")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if is_built(out) and not args.force:
        print(f"demo model already built at {out} (use --force to rebuild)")
        return 0

    def report(done, total, message, **metrics):
        print(f"  {message}" + (f"  loss {metrics['loss']:.3f}" if "loss" in metrics else ""), flush=True)

    print(f"building the demo model into {out} ...", flush=True)
    info = build_demo_model(out, DemoConfig(steps=args.steps), force=args.force, progress=report)
    print(
        f"done in {info['build_seconds']} s: {info['parameters']:,} parameters, "
        f"vocabulary {info['tokenizer_vocab']}, loss {info['first_loss']:.2f} -> {info['final_loss']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
