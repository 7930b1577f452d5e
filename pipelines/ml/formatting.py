"""Turning dataset records into model inputs: the same prompts for training and evaluation.

Every record becomes a ``(prompt, completion)`` pair. Only the completion is learned (the
prompt's labels are -100), so the model learns to answer, not to ask:

- ``instruction``: the model's chat template with one user turn when it has one, else an
  Alpaca-style "### Instruction / ### Input / ### Response" prompt;
- ``chat``: the conversation up to the last assistant turn through the chat template; that
  turn is the completion;
- ``classification``: "Classify the text into one of: a, b, c." + the text; the completion is
  " <label>", and evaluation scores each label's log-likelihood after the same prompt;
- ``text``: no prompt; every token is learned (long texts are cut into max-length pieces).

The tokenizer is passed in; this module imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.context import NodeFailure

CLASSIFY_PROMPT = "Classify the text into one of: {labels}.\nText: {text}\nLabel:"
ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"


@dataclass
class Example:
    prompt: str
    completion: str
    templated: bool = False  # the prompt came from a chat template and already holds BOS


@dataclass
class Encoded:
    """Token ids with labels, plus what was lost on the way (reported to the user)."""

    items: list[dict[str, list[int]]] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0


def classification_prompt(text: str, labels: list[str]) -> str:
    return CLASSIFY_PROMPT.format(labels=", ".join(labels), text=text)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def to_example(record: dict[str, Any], fmt: str, tokenizer, labels: list[str] | None = None) -> Example:
    if fmt == "classification":
        return Example(classification_prompt(record["text"], labels or []), " " + record["label"])
    if fmt == "text":
        return Example("", record["text"])
    if fmt == "instruction":
        return _instruction(record, tokenizer)
    if fmt == "chat":
        return _chat(record["messages"], tokenizer)
    raise NodeFailure(f"unknown dataset format {fmt!r}")


def _instruction(record: dict[str, Any], tokenizer) -> Example:
    user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    if has_chat_template(tokenizer):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return Example(prompt, record["output"], templated=True)
    input_block = f"### Input:\n{record['input']}\n\n" if record.get("input") else ""
    return Example(
        ALPACA_PROMPT.format(instruction=record["instruction"], input_block=input_block), record["output"]
    )


def _chat(messages: list[dict[str, str]], tokenizer) -> Example:
    if not has_chat_template(tokenizer):
        raise NodeFailure(
            "this chat dataset needs a model with a chat template (its tokenizer has none): use an "
            "instruction dataset, or a chat model such as the demo model"
        )
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if full.startswith(prompt):
        return Example(prompt, full[len(prompt) :], templated=True)
    # A template that renders the last turn differently from a generation prompt: learn it all.
    return Example("", full, templated=True)


def encode_pair(example: Example, tokenizer, max_length: int) -> tuple[list[int], list[int], bool] | None:
    """(input_ids, labels, truncated); None when no completion token survives truncation."""
    # BOS comes from the tokenizer on the first piece, unless a chat template already wrote it.
    if example.prompt:
        prompt_ids = tokenizer(example.prompt, add_special_tokens=not example.templated)["input_ids"]
        completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = []
        completion_ids = tokenizer(example.completion, add_special_tokens=not example.templated)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in completion_ids:
        completion_ids = completion_ids + [eos]
    ids = prompt_ids + completion_ids
    labels = [-100] * len(prompt_ids) + completion_ids
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == -100 for label in labels):
        return None
    return ids, labels, truncated


def encode_records(
    records: list[dict[str, Any]], fmt: str, tokenizer, max_length: int, labels: list[str] | None = None
) -> Encoded:
    """Training items. Plain text longer than ``max_length`` is split, not cut off."""
    out = Encoded()
    for record in records:
        example = to_example(record, fmt, tokenizer, labels)
        if fmt == "text":
            pieces = _text_pieces(example.completion, tokenizer, max_length)
            out.items.extend({"input_ids": p, "labels": p[:]} for p in pieces)
            out.tokens += sum(len(p) for p in pieces)
            continue
        encoded = encode_pair(example, tokenizer, max_length)
        if encoded is None:
            out.dropped += 1
            continue
        ids, item_labels, truncated = encoded
        out.truncated += truncated
        out.tokens += len(ids)
        out.items.append({"input_ids": ids, "labels": item_labels})
    return out


def _text_pieces(text: str, tokenizer, max_length: int) -> list[list[int]]:
    ids = tokenizer(text)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    pieces = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    return [p for p in pieces if len(p) >= 2]  # one token teaches nothing (no next token)


def reference_answer(record: dict[str, Any], fmt: str) -> str:
    """The text a generation should match (for ROUGE and BLEU)."""
    if fmt == "instruction":
        return record["output"]
    if fmt == "chat":
        return record["messages"][-1]["content"]
    if fmt == "classification":
        return record["label"]
    return record["text"]


def generation_prompt(
    record: dict[str, Any], fmt: str, tokenizer, labels: list[str] | None = None
) -> Example:
    """The prompt to generate from; plain text is split in half (continue the first half)."""
    if fmt != "text":
        return to_example(record, fmt, tokenizer, labels)
    words = record["text"].split()
    cut = max(1, len(words) // 2)
    return Example(" ".join(words[:cut]), " " + " ".join(words[cut:]))
