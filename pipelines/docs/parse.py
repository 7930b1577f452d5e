"""Extract clean text from a document whose kind ``sniff`` decided.

Structure is kept as plain-text conventions the chunker understands: Word and HTML headings
become Markdown ``#`` lines, list items ``- `` lines, CSV/JSONL rows one record per paragraph.
PDF page boundaries are kept as offsets so a passage can say which page it came from.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.docs.clean import clean_text
from pipelines.docs.errors import DocumentError
from pipelines.docs.html import html_to_text
from pipelines.docs.sniff import decode_text

MAX_WARNINGS = 5


@dataclass
class Parsed:
    text: str
    kind: str
    structure: str = "headings"  # "headings": sections by # lines; "records": one per paragraph
    pages: list[tuple[int, int]] = field(default_factory=list)  # (char offset, page number)
    title: str = ""
    warnings: list[str] = field(default_factory=list)

    def page_at(self, offset: int) -> int | None:
        page = None
        for start, number in self.pages:
            if start > offset:
                break
            page = number
        return page

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Parsed:
        data = dict(data)
        data["pages"] = [tuple(p) for p in data.get("pages", [])]
        return cls(**data)


def parse(data: bytes, kind: str) -> Parsed:
    """Clean text of a document. Raises DocumentError when nothing usable can be read."""
    parser = _PARSERS.get(kind)
    if parser is None:
        raise DocumentError(f"Unsupported document kind {kind!r}.")
    parsed = parser(data)
    if not parsed.text.strip():
        raise DocumentError("No text was found in the document.")
    return parsed


def _parse_plain(data: bytes, kind: str) -> Parsed:
    return Parsed(text=clean_text(decode_text(data), kind=kind), kind=kind)


def _parse_pdf(data: bytes) -> Parsed:
    reader = _open_pdf(data)
    pieces: list[str] = []
    pages: list[tuple[int, int]] = []
    warnings: list[str] = []
    offset = 0
    for number, page in enumerate(_pdf_pages(reader), start=1):
        try:
            text = clean_text(page.extract_text() or "", kind="pdf")
        except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
            _warn(warnings, f"Page {number} could not be read ({type(exc).__name__}).")
            continue
        if not text:
            continue
        if pieces:
            offset += 2  # the "\n\n" joining pages
        pages.append((offset, number))
        pieces.append(text)
        offset += len(text)
    if not pieces:
        raise DocumentError(
            "The PDF has no text layer (scanned pages?). Text recognition (OCR) is "
            "not supported: upload a PDF with selectable text."
        )
    return Parsed(
        text="\n\n".join(pieces),
        kind="pdf",
        pages=pages,
        warnings=warnings,
        title=_pdf_title(reader),
        structure="headings",
    )


def _open_pdf(data: bytes):
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files are reported to the user
    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for damaged files
        raise DocumentError(f"The PDF is damaged and cannot be read ({_short(exc)}).") from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # an owner password alone still lets anyone read it
        except DependencyError as exc:
            raise DocumentError("The PDF is encrypted with a method this server cannot open.") from exc
        except Exception:  # noqa: BLE001
            opened = 0
        if not opened:
            raise DocumentError(
                "The PDF is protected by a password. Remove the password (for example "
                "print it to a new PDF) and upload it again."
            )
    return reader


def _pdf_pages(reader) -> list:
    try:
        pages = list(reader.pages)
    except Exception as exc:  # noqa: BLE001
        raise DocumentError(f"The PDF is damaged and its pages cannot be read ({_short(exc)}).") from exc
    if not pages:
        raise DocumentError("The PDF has no pages.")
    return pages


def _pdf_title(reader) -> str:
    try:
        return str((reader.metadata or {}).get("/Title") or "")[:200]
    except Exception:  # noqa: BLE001 - a title is a nicety
        return ""


def _parse_docx(data: bytes) -> Parsed:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except Exception as exc:  # noqa: BLE001 - python-docx raises KeyError, lxml errors, ...
        raise DocumentError(f"The Word document is damaged and cannot be read ({_short(exc)}).") from exc
    lines = [_docx_table(block) if isinstance(block, Table) else _docx_paragraph(block) for block in blocks]
    title = ""
    try:
        title = document.core_properties.title or ""
    except Exception:  # noqa: BLE001
        title = ""
    return Parsed(
        text=clean_text("\n\n".join(x for x in lines if x), kind="docx"), kind="docx", title=title[:200]
    )


def _docx_paragraph(paragraph) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return f"# {text}"
    if style.startswith("Heading"):
        level = style.removeprefix("Heading").strip()
        depth = int(level) if level.isdigit() else 2
        return f"{'#' * max(1, min(depth, 6))} {text}"
    if style.startswith("List"):
        return f"- {text}"
    return text


def _docx_table(table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            value = cell.text.strip()
            if not cells or cells[-1] != value:  # merged cells repeat their text
                cells.append(value)
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _parse_html(data: bytes) -> Parsed:
    text, title = html_to_text(decode_text(data))
    return Parsed(text=clean_text(text, kind="html"), kind="html", title=title[:200])


def _parse_csv(data: bytes) -> Parsed:
    text = decode_text(data)
    sample = text[:16384]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    records: list[str] = []
    warnings: list[str] = []
    try:
        header = [h.strip() or f"column {i + 1}" for i, h in enumerate(next(rows, []))]
        for row in rows:
            if len(row) != len(header) and any(row):
                _warn(warnings, f"Line {rows.line_num} has {len(row)} fields, the header {len(header)}.")
            fields = [
                f"{name}: {value.strip()}" for name, value in zip(header, row, strict=False) if value.strip()
            ]
            if fields:
                records.append("\n".join(fields))
    except csv.Error as exc:
        raise DocumentError(f"The CSV file is malformed at line {rows.line_num}: {exc}.") from exc
    if not records:
        raise DocumentError("The CSV file has a header but no data rows.")
    return Parsed(
        text=clean_text("\n\n".join(records), kind="csv"), kind="csv", structure="records", warnings=warnings
    )


def _parse_jsonl(data: bytes) -> Parsed:
    records: list[str] = []
    warnings: list[str] = []
    lines = decode_text(data).splitlines()
    if len(lines) == 1 or (lines and lines[0].lstrip().startswith("[")):
        lines = _json_document_rows("\n".join(lines)) or lines
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            _warn(warnings, f"Line {number} is not valid JSON and was skipped.")
            continue
        records.append(_record_text(value))
    if not records:
        raise DocumentError("No line of the file is valid JSON (expected one JSON object per line).")
    return Parsed(
        text=clean_text("\n\n".join(r for r in records if r), kind="jsonl"),
        kind="jsonl",
        structure="records",
        warnings=warnings,
    )


def _json_document_rows(text: str) -> list[str] | None:
    """A .json file holding one array of records is read as if it were JSON Lines."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    rows = value if isinstance(value, list) else [value]
    return [json.dumps(row, ensure_ascii=False) for row in rows]


def _record_text(value: Any) -> str:
    if not isinstance(value, dict):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    lines = []
    for key, item in value.items():
        if item is None or item == "":
            continue
        shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        lines.append(f"{key}: {shown}")
    return "\n".join(lines)


def _warn(warnings: list[str], message: str) -> None:
    if len(warnings) < MAX_WARNINGS:
        warnings.append(message)
    elif len(warnings) == MAX_WARNINGS:
        warnings.append("More problems were found; only the first ones are listed.")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


_PARSERS = {
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "html": _parse_html,
    "markdown": lambda data: _parse_plain(data, "markdown"),
    "text": lambda data: _parse_plain(data, "text"),
    "csv": _parse_csv,
    "jsonl": _parse_jsonl,
}
