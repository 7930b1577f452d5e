"""Where knowledge files live: relative paths under MEDIA_ROOT, made by this code only.

Workers on the same machine (the embedded default) read the same folder; a relative path in
the database keeps rows valid when MEDIA_ROOT moves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT).resolve()


def absolute(relpath: str) -> Path:
    """The absolute path of a stored relative path; refuses anything escaping MEDIA_ROOT."""
    root = media_root()
    path = (root / relpath).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"path escapes the media folder: {relpath!r}")
    return path


def relative(path: Path) -> str:
    return str(Path(path).resolve().relative_to(media_root()))


def write_atomic(relpath: str, data: bytes) -> Path:
    """Write bytes to a new file; a crash never leaves a half-written file under the final name."""
    target = absolute(relpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def remove_file(relpath: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # already gone (or never written) is what we want
        absolute(relpath).unlink(missing_ok=True)


def remove_tree(relpath: str) -> None:
    if relpath:
        with contextlib.suppress(ValueError):
            shutil.rmtree(absolute(relpath), ignore_errors=True)
