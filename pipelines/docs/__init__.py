"""Documents to clean text to chunks. Pure Python (pypdf, python-docx, semchunk); no Django, no ML.

    sniff(data, filename)   -> Sniffed(kind, content_type, note)   what the bytes really are
    parse(data, kind)       -> Parsed(text, pages, structure, ...)  clean text of a document
    chunk_text(text, ...)   -> [TextChunk]                          token-aware passages

Every problem a user can fix (empty file, encrypted PDF, not UTF-8 ...) is a ``DocumentError``
whose message says what is wrong and what to do.
"""

from __future__ import annotations

from pipelines.docs.chunk import TextChunk, chunk_text, split_sections
from pipelines.docs.errors import DocumentError
from pipelines.docs.parse import Parsed, parse
from pipelines.docs.sniff import CONTENT_TYPES, EXTENSIONS, KINDS, Sniffed, sniff

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "KINDS",
    "DocumentError",
    "Parsed",
    "Sniffed",
    "TextChunk",
    "chunk_text",
    "parse",
    "sniff",
    "split_sections",
]
