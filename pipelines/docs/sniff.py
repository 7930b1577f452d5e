"""What a file really is, decided from its bytes; the name's extension only breaks ties.

A name can lie ("report.pdf" that is plain text, "notes.txt" that is a PDF): the content wins
and the answer carries a note saying so. Formats we cannot read get a message naming what the
file looks like, so the user knows what to convert it to.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from pipelines.docs.errors import DocumentError

KINDS = ("pdf", "docx", "html", "markdown", "text", "csv", "jsonl")
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "markdown": "text/markdown",
    "text": "text/plain",
    "csv": "text/csv",
    "jsonl": "application/jsonl",
}
EXTENSIONS = {
    "pdf": ".pdf",
    "docx": ".docx",
    "html": ".html",
    "markdown": ".md",
    "text": ".txt",
    "csv": ".csv",
    "jsonl": ".jsonl",
}
# Which kind each extension claims; used to phrase notes and to pick among text kinds.
_CLAIMS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".log": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# Signatures of formats we refuse, with words a user recognises.
_BINARY_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.doc, .xls, .ppt)"),
    (b"RIFF", "an audio or video file"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an audio file"),
    (b"\x00\x00\x00", "a binary file"),
)
_REFUSED_TEXT = ((b"{\\rtf", "an RTF document"), (b"%!PS", "a PostScript file"))
_SUPPORTED = "Upload PDF, Word (.docx), Markdown, HTML, plain text, CSV or JSONL files."
PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"
# A .docx of a few hundred pages is a few MB of XML; far more than this is a zip bomb.
MAX_DOCX_UNCOMPRESSED = 256 * 1024 * 1024
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)
_HTML_TAG = re.compile(rb"<(html|head|body|div|p|h[1-6]|article|section|table)[\s>]", re.I)
_MD_HEADING = re.compile(r"^#{1,6}\s+\S", re.M)


@dataclass(frozen=True)
class Sniffed:
    kind: str
    content_type: str
    note: str = ""  # set when the name claimed something else


def display_name(filename: str) -> str:
    """The name to show: the last path part only, without control characters, at most 200 chars."""
    base = PureWindowsPath(PurePosixPath(filename or "").name).name
    base = "".join(ch for ch in base if ch.isprintable()).strip().strip(".")
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else base[:200]
    return base or "document"


def extension(filename: str) -> str:
    return PurePosixPath(display_name(filename).lower()).suffix


def sniff(data: bytes, filename: str = "") -> Sniffed:
    """Decide the kind from the bytes. Raises DocumentError for empty or unsupported files."""
    if not data:
        raise DocumentError("The file is empty (0 bytes).")
    claimed = _CLAIMS.get(extension(filename))
    head = data[:1024]
    if PDF_MAGIC in head:
        return _answer("pdf", claimed, filename)
    if data.startswith(ZIP_MAGIC):
        _check_docx(data)
        return _answer("docx", claimed, filename)
    for magic, what in _REFUSED_TEXT:
        if data.startswith(magic):
            raise DocumentError(
                f"This looks like {what}, which is not supported: save it as PDF, Word (.docx) or plain text."
            )
    text = decode_text(data, refuse_binary=True)
    return _answer(_text_kind(data, text, claimed), claimed, filename)


def _answer(kind: str, claimed: str | None, filename: str) -> Sniffed:
    note = ""
    if claimed and claimed != kind and not (kind in ("text", "markdown") and claimed in ("text", "markdown")):
        what = (
            "plain text"
            if kind in ("text", "markdown")
            else kind.upper()
            if kind in ("pdf", "html")
            else kind
        )
        note = f"Named “{display_name(filename)}” but the content is {what}; read as {what}."
    return Sniffed(kind=kind, content_type=CONTENT_TYPES[kind], note=note)


def _check_docx(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"The file is a damaged ZIP/Word archive and cannot be opened ({exc}).") from exc
    if "word/document.xml" not in names:
        if any(n.startswith("xl/") for n in names):
            raise DocumentError("This is an Excel workbook, which is not supported: save the sheet as CSV.")
        if any(n.startswith("ppt/") for n in names):
            raise DocumentError("This is a PowerPoint file, which is not supported: save it as PDF.")
        raise DocumentError("This is a ZIP archive, not a Word document: unzip it and upload the files.")
    if expanded > MAX_DOCX_UNCOMPRESSED:
        raise DocumentError("The Word document expands to more than 256 MB of XML and was refused.")


def decode_text(data: bytes, *, refuse_binary: bool = False) -> str:
    """UTF-8 (or UTF-16 with a byte-order mark) to str; anything else is a DocumentError."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError("The file claims to be UTF-16 text but is not valid UTF-16.") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if refuse_binary:
            _refuse_known_binary(data)
        byte = data[exc.start]
        raise DocumentError(
            f"The file is not UTF-8 text (byte 0x{byte:02X} at position {exc.start}). "
            "Save it with UTF-8 encoding and upload it again."
        ) from exc
    if refuse_binary and "\x00" in text[:65536]:
        _refuse_known_binary(data)
        raise DocumentError("This looks like a binary file, not text. " + _SUPPORTED)
    return text


def _refuse_known_binary(data: bytes) -> None:
    # Only consulted once the bytes are known not to be text: "MZ" may begin an ordinary note.
    for magic, what in _BINARY_SIGNATURES:
        if data.startswith(magic):
            raise DocumentError(f"This looks like {what}, which is not supported. " + _SUPPORTED)


def _text_kind(data: bytes, text: str, claimed: str | None) -> str:
    if _HTML_START.match(data[:4096]) or (claimed == "html" and _HTML_TAG.search(data[:65536])):
        return "html"
    if claimed == "csv":
        return "csv"
    if claimed == "jsonl" or _looks_like_jsonl(text):
        return "jsonl"
    if claimed == "markdown" or _MD_HEADING.search(text[:65536]):
        return "markdown"
    return "text"


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text[:65536].splitlines()[:20] if line.strip()]
    if not lines or not lines[0].lstrip().startswith("{"):
        return False
    try:
        return all(isinstance(json.loads(line), dict) for line in lines[:-1] or lines)
    except ValueError:
        return False
