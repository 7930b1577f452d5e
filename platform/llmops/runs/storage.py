"""The one storage layer for artifacts: Django's default storage, files under
``artifacts/<key>/<name>`` (a folder keeps its tree), so a local folder and object storage are
interchangeable. Nothing here unpickles: artifacts are served and materialised as bytes.

On a local FileSystemStorage a new artifact is assembled in a temporary folder and renamed
into place, so a reader never sees half an artifact and two writers of the same key cannot
interleave files. Other storages get file-by-file uploads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, JsonResponse
from django.utils import timezone

from llmops.runs.models import Artifact
from pipelines.cache import content_hash

PREFIX = "artifacts"


def storage_name(key: str, name: str = "") -> str:
    return f"{PREFIX}/{key}/{name}" if name else f"{PREFIX}/{key}"


def _local_path(name: str) -> Path | None:
    """The file system path of a storage name, or None when the storage is not local."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


def _safe_name(path: Path) -> str:
    name = path.name.strip() or "artifact"
    return name if name not in (".", "..") else "artifact"


def write_files(*, key: str, source: Path, move: bool = False) -> str:
    """Put a file or folder under ``artifacts/<key>/`` and return its storage name.

    ``move`` (for files a node wrote into its own workdir) renames instead of copying.
    """
    name = storage_name(key, _safe_name(source))
    root = _local_path(storage_name(key))
    if root is not None:
        _write_local(root, source, _safe_name(source), move=move)
    else:
        _write_remote(name, source)
    return name


def _write_local(root: Path, source: Path, name: str, *, move: bool) -> None:
    parent = root.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    try:
        target = staging / name
        if move:
            shutil.move(str(source), target)
        elif source.is_dir():
            shutil.copytree(source, target, symlinks=False)
        else:
            shutil.copy2(source, target)
        trash = parent / f".old-{uuid.uuid4().hex}"
        if root.exists():
            os.replace(root, trash)
        os.replace(staging, root)
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_remote(name: str, source: Path) -> None:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        target = name if file == source else f"{name}/{file.relative_to(source).as_posix()}"
        if default_storage.exists(target):
            default_storage.delete(target)
        with file.open("rb") as fh:
            default_storage.save(target, File(fh))


def store_artifact(**arguments: Any) -> Artifact:
    """Store one output and its row (one row per key and workspace; a re-run replaces both).
    Takes ``artifact_prepare``'s arguments: the files, then the row in its own transaction."""
    prepared = artifact_prepare(**arguments)
    with transaction.atomic():  # the row and its lineage: one write transaction
        return artifact_record(prepared)


@dataclass
class PreparedArtifact:
    """An output whose files are stored and whose row is still to be written."""

    workspace_id: int
    key: str
    existing: dict[str, Any] | None
    fields: dict[str, Any]
    input_ids: list[int]


def artifact_prepare(
    *,
    workspace_id: int,
    key: str,
    type: str,  # noqa: A002
    path: Path | None,
    metadata: dict[str, Any],
    node_run_id: int | None,
    port: str,
    input_ids: list[int],
    move: bool = False,
) -> PreparedArtifact:
    """The slow half of storing, outside any transaction: hash, write the files."""
    sha, size = content_hash(path) if path is not None else ("", 0)
    is_dir = bool(path is not None and path.is_dir())
    existing = (
        Artifact.objects.filter(workspace_id=workspace_id, key=key)
        .order_by()
        .values("pk", "sha256", "path", "created_at")
        .first()
    )
    if (
        existing is not None
        and existing["sha256"] == sha
        and artifact_exists(Artifact(path=existing["path"]))
    ):
        name = existing["path"]  # same bytes already stored under this key
    else:
        name = write_files(key=key, source=path, move=move) if path is not None else ""
    fields = {
        "type": str(type),
        "name": _safe_name(path) if path is not None else "",
        "path": name,
        "is_dir": is_dir,
        "size": size,
        "sha256": sha,
        "metadata": metadata,
        "node_run_id": node_run_id,
        "port": port,
    }
    return PreparedArtifact(workspace_id, key, existing, fields, list(input_ids))


def artifact_record(prepared: PreparedArtifact) -> Artifact:
    """The quick half: the row and its lineage (the caller holds a transaction)."""
    existing, fields = prepared.existing, prepared.fields
    if existing is None:
        artifact = Artifact.objects.create(workspace_id=prepared.workspace_id, key=prepared.key, **fields)
    else:
        now = timezone.now()
        Artifact.objects.filter(pk=existing["pk"]).update(updated_at=now, **fields)
        artifact = Artifact(
            pk=existing["pk"],
            workspace_id=prepared.workspace_id,
            key=prepared.key,
            created_at=existing["created_at"],
            updated_at=now,
            **fields,
        )
    if prepared.input_ids:
        through = Artifact.inputs.through
        through.objects.bulk_create(
            [through(from_artifact_id=artifact.pk, to_artifact_id=i) for i in prepared.input_ids],
            ignore_conflicts=True,
        )
    return artifact


def artifact_exists(artifact: Artifact) -> bool:
    if not artifact.path:
        return True  # metadata-only
    local = _local_path(artifact.path)
    if local is not None:
        return local.exists()
    return default_storage.exists(artifact.path) or bool(_remote_files(artifact.path))


def materialise(artifact: Artifact) -> Path | None:
    """A local path to read the artifact from (the stored file itself when storage is local)."""
    if not artifact.path:
        return None
    local = _local_path(artifact.path)
    if local is not None:
        return local
    target = Path(settings.LLMOPS_ARTIFACT_CACHE_DIR) / artifact.key / (artifact.name or "artifact")
    done = target.parent / ".complete"
    if done.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for name, rel in _iter_stored(artifact):
        dest = target / rel if rel else target
        dest.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(name, "rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)
    done.touch()
    return target


def _remote_files(prefix: str) -> list[str]:
    try:
        dirs, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotImplementedError):
        return []
    out = [f"{prefix}/{f}" for f in files]
    for d in dirs:
        out += _remote_files(f"{prefix}/{d}")
    return out


def _iter_stored(artifact: Artifact) -> Iterator[tuple[str, str]]:
    """(storage name, path relative to the artifact) of every stored file."""
    if not artifact.is_dir:
        yield artifact.path, ""
        return
    local = _local_path(artifact.path)
    if local is not None:
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            rel = file.relative_to(local).as_posix()
            yield f"{artifact.path}/{rel}", rel
        return
    for name in sorted(_remote_files(artifact.path)):
        yield name, name[len(artifact.path) + 1 :]


def download_response(artifact: Artifact):
    """The artifact as a download: the file itself, a zip of a folder, or its metadata as JSON."""
    if not artifact.path:
        response = JsonResponse({"type": artifact.type, "metadata": artifact.metadata})
        response["Content-Disposition"] = f'attachment; filename="artifact-{artifact.pk}.json"'
        return response
    if not artifact.is_dir:
        return FileResponse(
            default_storage.open(artifact.path, "rb"),
            as_attachment=True,
            filename=artifact.name or f"artifact-{artifact.pk}",
        )
    # A temporary file, not memory: model folders are gigabytes. Weights barely compress, so
    # the fastest deflate level is enough for the JSONL and config files around them.
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        base = artifact.name or "artifact"
        for name, rel in _iter_stored(artifact):
            with default_storage.open(name, "rb") as src, archive.open(f"{base}/{rel}", "w") as dst:
                shutil.copyfileobj(src, dst)
    spool.seek(0)
    return FileResponse(spool, as_attachment=True, filename=f"{artifact.name or 'artifact'}.zip")
