"""Dataset parsing: the four formats, row errors by line, splits, the shipped files."""

from __future__ import annotations

import json

import pytest

from pipelines.ml import datasets as ds
from pipelines.ml.demo import DATA_DIR


def jsonl(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def test_instruction_rows_and_errors_by_line():
    text = jsonl(
        {"instruction": "Say hi", "input": "", "output": "hi"},
        "{not json",
        {"instruction": "Add", "input": "1+1", "output": ""},
        ["a", "list"],
        {"instruction": "Name a colour", "output": "red"},
        {"instruction": 3, "output": "x"},
    )
    parsed = ds.parse(text, name="train.jsonl")
    assert parsed.format == "instruction"
    assert [r["output"] for r in parsed.rows] == ["hi", "red"]
    assert parsed.rows[1]["input"] == ""
    reasons = {e.line: e.reason for e in parsed.errors}
    assert sorted(reasons) == [2, 3, 4, 6]
    assert "not valid JSON" in reasons[2]
    assert "'output' is missing or empty" in reasons[3]
    assert "expected a JSON object" in reasons[4]
    assert "'instruction' must be a string" in reasons[6]
    assert str(parsed.errors[0]).startswith("line 2: ")


def test_chat_rows_need_roles_and_a_final_assistant_turn():
    text = jsonl(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": []},
    )
    parsed = ds.parse(text, name="chat.jsonl")
    assert parsed.format == "chat" and len(parsed.rows) == 1
    reasons = [e.reason for e in parsed.errors]
    assert "last message must be the assistant" in reasons[0]
    assert "role 'robot'" in reasons[1]
    assert "non-empty list" in reasons[2]


def test_csv_classification_with_bad_rows_keeps_good_ones():
    text = 'text,label\n"hello, world",greeting\nbye,farewell\nonly-one-column\n,empty\nfine,greeting\n'
    parsed = ds.parse(text, name="labels.csv")
    assert parsed.format == "classification"
    assert [r["text"] for r in parsed.rows] == ["hello, world", "bye", "fine"]
    assert parsed.labels == ["farewell", "greeting"]
    assert [(e.line, e.reason) for e in parsed.errors] == [
        (4, "expected 2 columns, found 1"),
        (5, "'text' is missing or empty"),
    ]


def test_plain_text_is_one_row_per_line():
    parsed = ds.parse("first line\n\n  second line  \n", name="notes.txt")
    assert parsed.format == "text"
    assert parsed.rows == [{"text": "first line"}, {"text": "second line"}]


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        ("", "empty.jsonl", "empty"),
        (jsonl("{bad", "[1]"), "x.jsonl", "no usable rows"),
        ("a,b\n1,2\n", "x.csv", "'text' and a 'label' column"),
        ("text,label\nx,same\ny,same\n", "x.csv", "two or more"),
        (b"\xff\xfe\x00bad", "x.txt", "not UTF-8"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(data, name, message):
    with pytest.raises(ds.DatasetError, match=message):
        ds.parse(data, name=name)


def test_format_detection():
    assert ds.detect_format("a.jsonl", jsonl({"messages": []})) == "chat"
    assert ds.detect_format("a.jsonl", jsonl({"text": "x", "label": "y"})) == "classification"
    assert ds.detect_format("a.jsonl", jsonl({"text": "x"})) == "text"
    assert ds.detect_format("a.csv", "text,label\n") == "classification"


def test_stratified_split_keeps_every_label_in_validation():
    rows = [{"text": f"t{i}", "label": "a" if i % 4 else "b"} for i in range(40)]
    train, held = ds.split_rows(rows, validation=0.1, seed=1, stratify="label")
    assert len(train) + len(held) == 40
    assert {r["label"] for r in held} == {"a", "b"}
    again = ds.split_rows(rows, validation=0.1, seed=1, stratify="label")
    assert again == (train, held)
    assert ds.split_rows(rows, validation=0.0, seed=1)[1] == []


def test_dataset_artifact_round_trip(tmp_path):
    parsed = ds.parse(jsonl({"instruction": "a", "output": "b"}, "{x"), name="d.jsonl")
    train, held = ds.split_rows(parsed.rows, validation=0.5, seed=0)
    meta = ds.write_dataset(tmp_path / "d", parsed=parsed, train=train, validation=held, name="d")
    assert meta["format"] == "instruction" and meta["error_count"] == 1
    assert ds.load_meta(tmp_path / "d")["errors"][0]["line"] == 2
    assert ds.load_split(tmp_path / "d", "all") == parsed.rows


def test_shipped_news_dataset_has_four_balanced_labels():
    parsed = ds.parse((DATA_DIR / "news.csv").read_bytes(), name="news.csv")
    assert parsed.error_count == 0 and len(parsed.rows) == 160
    assert parsed.labels == ["business", "science", "sports", "world"]
    assert all(sum(r["label"] == label for r in parsed.rows) == 40 for label in parsed.labels)
