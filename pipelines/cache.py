"""Content keys: what a node's outputs depend on, as one stable hash.

A node's key is the SHA-256 of (kind, spec version, validated params, the keys of its input
artifacts in edge order). Two runs that give a node the same key may reuse its outputs: the
engine marks the node ``cached`` instead of running it. Bumping ``NodeSpec.version`` changes
every key of that kind, which is how an implementation change invalidates old outputs.

A node without input ports (a source) reads platform data that can change under the same
params (a document collection gains files), so its outputs are keyed by their *content*
instead (``content_hash``), and sources always run. Pure functions; no Django.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal data always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def node_key(
    *, kind: str, version: int, params: Mapping[str, Any], inputs: Mapping[str, Iterable[str]]
) -> str:
    """The content key of a node: its kind, spec version, params and input artifact keys.

    ``params`` should be the validated params with defaults filled in, so that leaving a field
    at its default and spelling the default out give the same key.
    """
    ordered_inputs = {port: list(keys) for port, keys in sorted(inputs.items())}
    return _sha("node", kind, str(version), canonical_json(params), canonical_json(ordered_inputs))


def output_key(*, namespace: str, node_key: str, port: str) -> str:
    """The key of one output artifact of a keyed node (``namespace`` keeps workspaces apart)."""
    return _sha("output", namespace, node_key, port)


def content_output_key(*, namespace: str, port: str, content_sha256: str, metadata: Mapping[str, Any]) -> str:
    """The key of a source node's output: what it contains, not how it was asked for."""
    return _sha("content", namespace, port, content_sha256, canonical_json(metadata))


def content_hash(path: Path | None) -> tuple[str, int]:
    """(SHA-256, total bytes) of a file or of a folder's files (relative names included).

    Symlinks are not followed: a node's output folder is hashed as it lies on disk.
    """
    digest = hashlib.sha256()
    if path is None:
        return digest.hexdigest(), 0
    path = Path(path)
    if path.is_file():
        return _hash_file(path, digest), path.stat().st_size
    total = 0
    for file in sorted(_walk_files(path)):
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode() + b"\x00")
        _hash_file(file, digest)
        total += file.stat().st_size
    return digest.hexdigest(), total


def _walk_files(root: Path) -> Iterable[Path]:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            file = Path(folder) / name
            if file.is_file() and not file.is_symlink():
                yield file


def _hash_file(path: Path, digest) -> str:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    digest.update(b"\x01")  # file boundary: "ab"+"c" must not equal "a"+"bc"
    return digest.hexdigest()
