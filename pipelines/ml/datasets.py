"""Dataset files: detect the format, parse rows, report bad rows by line, split, write.

Pure Python (no torch), so the web process validates an upload with the same code the
``source.dataset`` node runs. Four formats, each normalised to one record shape:

- ``instruction`` JSONL: ``{"instruction", "input", "output"}`` (input may be empty);
- ``chat`` JSONL: ``{"messages": [{"role", "content"}, ...]}`` ending with an assistant turn;
- ``text``: one training text per non-empty line (or JSONL ``{"text"}``), for pre-training;
- ``classification`` CSV with ``text`` and ``label`` columns (or JSONL ``{"text", "label"}``).

A malformed row becomes a ``RowError`` (line number and reason); the good rows are kept.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("instruction", "chat", "text", "classification")
DATA_DIR = Path(__file__).resolve().parent / "data"  # the shipped corpus and sample datasets
ROLES = ("system", "user", "assistant")
MAX_ERRORS_KEPT = 1000  # a file with a million bad rows should not make a million-row report
MAX_FIELD_CHARS = 1_000_000
csv.field_size_limit(MAX_FIELD_CHARS)


class DatasetError(ValueError):
    """The file as a whole cannot be used (wrong format, no usable rows)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedDataset:
    format: str
    rows: list[dict[str, Any]]
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0  # all errors, even past MAX_ERRORS_KEPT
    labels: list[str] = field(default_factory=list)

    def add_error(self, line: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(RowError(line, reason))

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": len(self.rows),
            "error_count": self.error_count,
            "errors": [asdict(e) for e in self.errors],
            "labels": self.labels,
        }


def detect_format(name: str, text: str) -> str:
    """The format a file is most likely in, from its name and its first JSON row."""
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "classification"
    if suffix in (".txt", ".md", ".text"):
        return "text"
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            first = json.loads(line)
        except json.JSONDecodeError:
            return "text" if suffix not in (".jsonl", ".json", ".ndjson") else "instruction"
        if isinstance(first, dict):
            if "messages" in first:
                return "chat"
            if "instruction" in first or "output" in first:
                return "instruction"
            if "label" in first:
                return "classification"
            if "text" in first:
                return "text"
        return "instruction"
    raise DatasetError("the file is empty")


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"line {line}: the file is not UTF-8 text") from exc


def parse(data: bytes | str, *, name: str = "data.jsonl", format: str = "auto") -> ParsedDataset:  # noqa: A002
    """Parse a whole file. Raises DatasetError only when no row at all can be used."""
    text = decode(data) if isinstance(data, bytes) else data
    fmt = detect_format(name, text) if format == "auto" else format
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    is_csv = Path(name).suffix.lower() in (".csv", ".tsv")
    if fmt == "classification" and is_csv:
        result = _parse_csv(text, delimiter="\t" if name.lower().endswith(".tsv") else ",")
    elif fmt == "text" and not _looks_like_jsonl(text):
        result = _parse_lines(text)
    else:
        result = _parse_jsonl(text, fmt)
    if fmt == "classification":
        result.labels = sorted({row["label"] for row in result.rows})
        if len(result.labels) == 1:
            raise DatasetError(
                f"every row has the label {result.labels[0]!r}: classification needs two or more"
            )
    if not result.rows:
        first = f"; first problem: {result.errors[0]}" if result.errors else ""
        raise DatasetError(f"no usable rows in the file (read as {fmt}){first}")
    return result


def _looks_like_jsonl(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.lstrip().startswith("{")


def _parse_lines(text: str) -> ParsedDataset:
    result = ParsedDataset("text", [])
    for line in text.splitlines():
        if line.strip():
            result.rows.append({"text": line.strip()})
    return result


def _parse_jsonl(text: str, fmt: str) -> ParsedDataset:
    result = ParsedDataset(fmt, [])
    validate = VALIDATORS[fmt]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            result.add_error(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            result.add_error(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        try:
            result.rows.append(validate(obj))
        except ValueError as exc:
            result.add_error(number, str(exc))
    return result


def _parse_csv(text: str, delimiter: str) -> ParsedDataset:
    result = ParsedDataset("classification", [])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise DatasetError("the CSV file has no header row") from exc
    if "text" not in header or "label" not in header:
        raise DatasetError(f"the CSV header must name a 'text' and a 'label' column, found {header}")
    text_at, label_at = header.index("text"), header.index("label")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.add_error(reader.line_num, f"unreadable CSV row ({exc})")
            continue
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            result.add_error(reader.line_num, f"expected {len(header)} columns, found {len(cells)}")
            continue
        try:
            result.rows.append(_classification({"text": cells[text_at], "label": cells[label_at]}))
        except ValueError as exc:
            result.add_error(reader.line_num, str(exc))
    return result


def _string(obj: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"'{key}' is missing or empty")
    return value


def _instruction(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction": _string(obj, "instruction"),
        "input": _string(obj, "input", required=False),
        "output": _string(obj, "output"),
    }


def _chat(obj: dict[str, Any]) -> dict[str, Any]:
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i + 1} is not an object")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"message {i + 1} has role {role!r}; use one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i + 1} has no text 'content'")
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer (the part that is learned)")
    return {"messages": clean}


def _text(obj: dict[str, Any]) -> dict[str, Any]:
    return {"text": _string(obj, "text")}


def _classification(obj: dict[str, Any]) -> dict[str, Any]:
    label = obj.get("label")
    if isinstance(label, int | float) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise ValueError("'label' is missing or empty")
    return {"text": _string(obj, "text").strip(), "label": label.strip()}


VALIDATORS = {
    "instruction": _instruction,
    "chat": _chat,
    "text": _text,
    "classification": _classification,
}


def split_rows(
    rows: list[dict[str, Any]], *, validation: float, seed: int, stratify: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle and split; with ``stratify`` (the label key) each label keeps its share.

    Any positive share holds out at least one row (when there are two or more), so an
    evaluation always has something to measure.
    """
    rng = random.Random(seed)
    if validation <= 0 or len(rows) < 2:
        shuffled = rows[:]
        rng.shuffle(shuffled)
        return shuffled, []
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.get(stratify) if stratify else None].append(row)
    train, held = [], []
    for key in sorted(groups, key=str):
        group = groups[key]
        rng.shuffle(group)
        n = round(len(group) * validation)
        if n == 0 and len(group) >= 2 and (stratify or not held):
            n = 1
        held.extend(group[:n])
        train.extend(group[n:])
    if not train:  # tiny files: keep at least one training row
        train.append(held.pop())
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_dataset(folder: Path, *, parsed: ParsedDataset, train: list, validation: list, **meta: Any) -> dict:
    """The DATASET artifact layout: train.jsonl, validation.jsonl and meta.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "validation.jsonl", validation)
    info = {
        **parsed.summary(),
        "train_rows": len(train),
        "validation_rows": len(validation),
        **meta,
    }
    info["errors"] = info["errors"][:100]
    (folder / "meta.json").write_text(json.dumps(info, indent=2, ensure_ascii=False))
    return info


def load_split(folder: Path, split: str) -> list[dict[str, Any]]:
    """Rows of one split ('train', 'validation' or 'all') of a DATASET artifact folder."""
    folder = Path(folder)
    if split == "all":
        return read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "validation.jsonl")
    return read_jsonl(folder / f"{split}.jsonl")


def load_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def preview(parsed: ParsedDataset, limit: int = 10) -> list[dict[str, Any]]:
    """The first rows, with long strings shortened for display."""

    def short(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 300:
            return value[:300] + "…"
        if isinstance(value, list):
            return [short(v) for v in value]
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    return [short(row) for row in parsed.rows[:limit]]
