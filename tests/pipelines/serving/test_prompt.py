"""Prompt assembly within a token budget, extractive answers, request limits (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.serving import prompt
from pipelines.serving.protocol import MAX_QUERY_CHARS, QueryIn, effective_max_tokens, effective_temperature

TEMPLATE = "Context:\n{context}\nQuestion: {question}\nAnswer:"


def words(text: str) -> int:
    return len(text.split())


def cut(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def source(doc: str, text: str) -> dict:
    return {"document": doc, "chunk": 1, "score": 0.9, "text": text}


def test_all_passages_fit():
    text, used = prompt.fit_context(
        TEMPLATE,
        "why?",
        [source("a.md", "alpha beta"), source("b.md", "gamma")],
        budget=100,
        count=words,
        truncate=cut,
    )
    assert used == 2
    assert "[1] (a.md) alpha beta" in text and "[2] (b.md) gamma" in text
    assert text.endswith("Question: why?\nAnswer:")


def test_passages_that_do_not_fit_are_left_out_best_first_kept():
    long = " ".join(["word"] * 50)
    text, used = prompt.fit_context(
        TEMPLATE,
        "q",
        [source("a.md", "short one"), source("b.md", long)],
        budget=20,
        count=words,
        truncate=cut,
    )
    assert used == 1
    assert "short one" in text and "b.md" not in text


def test_a_first_passage_too_long_is_cut_not_dropped():
    long = " ".join(f"w{i}" for i in range(200))
    text, used = prompt.fit_context(
        TEMPLATE, "q", [source("a.md", long)], budget=60, count=words, truncate=cut
    )
    assert used == 1
    assert words(text) <= 60
    assert "w0" in text and "w199" not in text


def test_user_text_is_never_parsed_as_a_template():
    text, _ = prompt.fit_context(
        TEMPLATE, "{context.__class__} {0}", [], budget=50, count=words, truncate=cut
    )
    assert "{context.__class__} {0}" in text


def test_extractive_answer_cites_documents():
    answer = prompt.extractive_answer([source("a.md", " first passage "), source("b.md", "second")])
    assert answer.splitlines()[0] == "[1] (a.md) first passage"
    assert "[2] (b.md) second" in answer
    assert prompt.extractive_answer([]) == prompt.NOTHING_FOUND


def test_query_limits_name_the_field():
    with pytest.raises(ValidationError) as err:
        QueryIn.model_validate({"query": "x" * (MAX_QUERY_CHARS + 1)})
    assert err.value.errors()[0]["loc"] == ("query",)
    for field, value in (("max_tokens", 0), ("temperature", 2.5), ("adapter", "../etc")):
        with pytest.raises(ValidationError) as err:
            QueryIn.model_validate({"query": "ok", field: value})
        assert err.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        QueryIn.model_validate({"query": "ok", "surprise": 1})


def test_a_request_may_ask_for_less_never_more():
    assert effective_max_tokens(None, 256) == 256
    assert effective_max_tokens(10, 256) == 10
    assert effective_max_tokens(9999, 256) == 256
    assert effective_temperature(None, 0.7) == 0.7
    assert effective_temperature(0.0, 0.7) == 0.0
