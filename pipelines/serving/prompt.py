"""Prompt assembly and extractive answers: plain string work, no model needed.

Token budgets are enforced with whatever counter the caller passes (the generator's
tokenizer), so this module stays pure and testable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NOTHING_FOUND = "I could not find anything about that in the documents."
# A passage cut to fit is still worth including when at least this many tokens remain.
MIN_PASSAGE_TOKENS = 24


def render(template: str, *, context: str, question: str) -> str:
    """Fill {context} and {question}. The template was checked when the node was configured
    (only these two fields); the user's text is a format *argument*, never parsed as a template."""
    return template.format(context=context, question=question)


def passage_block(number: int, source: dict[str, Any], text: str | None = None) -> str:
    return (
        f"[{number}] ({source.get('document') or 'document'}) {text if text is not None else source['text']}"
    )


def fit_context(
    template: str,
    question: str,
    sources: list[dict[str, Any]],
    *,
    budget: int,
    count: Callable[[str], int],
    truncate: Callable[[str, int], str],
) -> tuple[str, int]:
    """The filled prompt holding as many passages (best first) as fit in ``budget`` tokens,
    and how many were used. The first passage is cut to fit rather than dropped."""
    fixed = count(render(template, context="", question=question))
    remaining = budget - fixed
    blocks: list[str] = []
    for number, source in enumerate(sources, start=1):
        block = passage_block(number, source)
        size = count(block) + 1  # the blank line between blocks
        if size <= remaining:
            blocks.append(block)
            remaining -= size
            continue
        if not blocks and remaining >= MIN_PASSAGE_TOKENS:
            blocks.append(truncate(block, remaining - 1))
        break
    return render(template, context="\n\n".join(blocks), question=question), len(blocks)


def extractive_answer(sources: list[dict[str, Any]]) -> str:
    """The best passages themselves, numbered and attributed: no model, no invention."""
    if not sources:
        return NOTHING_FOUND
    return "\n\n".join(passage_block(n, s, s["text"].strip()) for n, s in enumerate(sources, start=1))
