"""Text cleaning: the same normalisation for every format, plus PDF-specific repairs."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters except tab and newline; they break tokenizers and the preview.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\u00ad]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]{2,}")
# "exam-\nple" in PDF text is one word broken by the layout, not a hyphenated compound.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n(?=[a-z])")


def clean_text(text: str, *, kind: str = "text") -> str:
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _CONTROL.sub("", text)
    if kind == "pdf":
        text = _HYPHEN_BREAK.sub("", text)
        text = _SPACE_RUNS.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()
