"""Token-aware chunking with semchunk, cut first at headings (or records), then at the largest
natural break inside each section: blank lines, lines, sentences, words.

A chunk never spans two sections, so a passage about "Installation" does not end with the
first lines of "Licence"; a section that is only a heading (a chapter title followed directly
by its first sub-heading) is joined to the next one instead of becoming a useless chunk.
Sizes are counted with the embedding model's own tokenizer (``token_counter``), so a chunk of
256 tokens is exactly what the model sees, not an estimate from characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
_RECORD_BREAK = re.compile(r"\n\s*\n")
_FENCE = re.compile(r"^(```|~~~).*?(^\1|\Z)", re.M | re.S)


@dataclass(frozen=True)
class TextChunk:
    text: str
    start: int  # offsets into the cleaned document text: text == document[start:end]
    end: int
    heading: str  # heading path, e.g. "Guide > Installation"; "" before the first heading
    position: int  # 0-based order within the document


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    heading: str


def split_sections(text: str, structure: str = "headings") -> list[Section]:
    if structure == "records":
        return _record_sections(text)
    return _heading_sections(text)


def _heading_sections(text: str) -> list[Section]:
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []  # (level, title) of the headings above the current point
    start, heading = 0, ""
    fences = [m.span() for m in _FENCE.finditer(text)]
    for match in _HEADING.finditer(text):
        if any(a <= match.start() < b for a, b in fences):
            continue  # "# comment" inside a code block is not a heading
        if not text[start : match.start()].strip():
            start = match.start()
        elif not _only_heading(text, start, match.start()):
            sections.append(Section(start, match.start(), heading))
            start = match.start()
        level = len(match.group(1))
        trail = [(lvl, title) for lvl, title in trail if lvl < level] + [(level, match.group(2).strip())]
        heading = " > ".join(title for _, title in trail)
    if text[start:].strip():
        sections.append(Section(start, len(text), heading))
    return sections


def _only_heading(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is a heading line with nothing under it."""
    match = _HEADING.match(text, start)
    return bool(match) and not text[match.end() : end].strip()


def _record_sections(text: str) -> list[Section]:
    sections, start = [], 0
    for match in _RECORD_BREAK.finditer(text):
        if text[start : match.start()].strip():
            sections.append(Section(start, match.start(), ""))
        start = match.end()
    if text[start:].strip():
        sections.append(Section(start, len(text), ""))
    return sections


def chunk_text(
    text: str,
    *,
    chunk_size: int,
    overlap: int,
    token_counter: Callable[[str], int],
    structure: str = "headings",
) -> list[TextChunk]:
    """Split ``text`` into chunks of at most ``chunk_size`` tokens, neighbours sharing about
    ``overlap`` tokens. ``token_counter`` should be memoized by the caller (semchunk calls it
    often on the same pieces); it is passed with ``memoize=False`` so semchunk keeps no global
    cache keyed by a function that may be rebuilt per document."""
    import semchunk

    if chunk_size < 2:
        raise ValueError("chunk_size must be at least 2 tokens")
    overlap = max(0, min(overlap, chunk_size - 1))
    chunks: list[TextChunk] = []
    for section in split_sections(text, structure):
        body = text[section.start : section.end]
        pieces, offsets = semchunk.chunk(
            body, chunk_size, token_counter, memoize=False, offsets=True, overlap=overlap or None
        )
        for piece, (start, end) in zip(pieces, offsets, strict=True):
            stripped = piece.strip()
            if stripped:
                start += len(piece) - len(piece.lstrip())
                end = start + len(stripped)
                chunks.append(
                    TextChunk(
                        stripped, section.start + start, section.start + end, section.heading, len(chunks)
                    )
                )
    return chunks


def word_counter(text: str) -> int:
    """A tokenizer-free counter (one token per whitespace-separated word), for tests and tools."""
    return len(text.split())
