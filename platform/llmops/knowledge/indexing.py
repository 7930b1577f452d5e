"""Vector indexes: create, keep in sync with their collection, register new versions.

The web never embeds (it may not import torch or FAISS): it queues ``llmops.knowledge.sync_index``
on the queue of the ``vectorize.faiss`` node kind, and a worker runs
``pipelines.vectorstore.sync_index`` between ``index_sync_plan`` and ``index_version_register``
below. Versions are folders written once; registering one is a compare-and-set on the
index's version number, so two syncs racing cannot both win (the loser retries on top).

An index built by a pipeline run reaches the same table through ``index_register_from_artifact``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.config.celery import send_task
from llmops.knowledge import storage
from llmops.knowledge.models import Chunk, Collection, Document, DocumentState, IndexStatus, VectorIndex
from pipelines.nodes.vectorize_faiss.spec import SPEC as VECTORIZE_SPEC
from pipelines.nodes.vectorize_faiss.spec import VectorizeFaissParams

log = logging.getLogger(__name__)

SYNC_TASK = "llmops.knowledge.sync_index"
WARM_TASK = "llmops.knowledge.warm"
# Uploads of one drag-and-drop arrive as several requests within a second or two; waiting a
# moment lets one sync pick them all up.
SYNC_DELAY_S = 2
# A queued sync that never started (broker flushed, message lost) stops blocking new ones.
SYNC_STALE_AFTER = timedelta(minutes=10)
KEEP_VERSIONS = 2  # the current folder and the one before it (a serve worker may still read it)
_VERSION_DIR = re.compile(r"^v(\d+)-[0-9a-f]{8}$")


# --- web side ---------------------------------------------------------------------------------


def index_create(
    *, user, collection: Collection, name: str = "", follow_collection: bool = True, **params: Any
) -> VectorIndex:
    """A new index of the collection, built right away on a worker. ``params`` are those of the
    vectorize.faiss node (embedding_model, chunk_size, chunk_overlap, index_type, metric, batch_size)."""
    if not user_can(user=user, workspace=collection.workspace, role=Role.EDITOR):
        raise PermissionDenied("Creating an index needs the editor role in this workspace.")
    try:
        checked = VectorizeFaissParams.model_validate({k: v for k, v in params.items() if v is not None})
    except Exception as exc:  # noqa: BLE001 - pydantic and FieldError both carry the message
        raise ValidationError(_first_error(exc)) from exc
    index = VectorIndex.objects.create(
        workspace=collection.workspace,
        collection=collection,
        name=(name or "").strip()[:120] or f"{collection.name} search",
        model_name=checked.embedding_model,
        index_type=checked.index_type,
        metric=checked.metric,
        chunk_size=checked.chunk_size,
        chunk_overlap=checked.chunk_overlap,
        batch_size=checked.batch_size,
        follow_collection=follow_collection,
    )
    index_sync_request(index=index, add_new=True, countdown=0)
    index.refresh_from_db()
    return index


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        return f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return str(exc)


def index_update(
    *, user, index: VectorIndex, follow_collection: bool | None = None, name: str | None = None
) -> VectorIndex:
    if not user_can(user=user, workspace=index.workspace, role=Role.EDITOR):
        raise PermissionDenied("Changing an index needs the editor role in this workspace.")
    if name is not None and name.strip():
        index.name = name.strip()[:120]
    if follow_collection is not None:
        index.follow_collection = follow_collection
    index.save(update_fields=["name", "follow_collection", "updated_at"])
    if follow_collection:
        index_sync_request(index=index, add_new=True)
        index.refresh_from_db()
    return index


def index_delete(*, user, index: VectorIndex) -> None:
    if not user_can(user=user, workspace=index.workspace, role=Role.EDITOR):
        raise PermissionDenied("Deleting an index needs the editor role in this workspace.")
    folder = index.folder_relpath
    index.delete()
    transaction.on_commit(lambda: storage.remove_tree(folder))


def vectorize_queue() -> str:
    return VECTORIZE_SPEC.queue


def index_sync_request(*, index: VectorIndex, add_new: bool = True, countdown: int = SYNC_DELAY_S) -> bool:
    """Queue a sync unless one is already queued (that one will see the latest documents).
    Returns whether a task was queued."""
    now = timezone.now()
    claimed = (
        VectorIndex.objects.filter(pk=index.pk)
        .filter(_not_pending(now))
        .update(sync_pending=True, sync_requested_at=now, status=_queued_status(index), message="Queued")
    )
    if not claimed:
        return False
    index_id, queue = index.pk, vectorize_queue()

    def send() -> None:
        try:
            send_task(
                SYNC_TASK, kwargs={"index_id": index_id, "add_new": add_new}, queue=queue, countdown=countdown
            )
        except Exception as exc:  # noqa: BLE001 - a down broker must not fail the upload itself
            log.warning("could not queue index sync %s: %s", index_id, exc)
            VectorIndex.objects.filter(pk=index_id).update(
                sync_pending=False, message="Could not reach the task queue; try again."
            )

    transaction.on_commit(send)
    return True


def _not_pending(now) -> Q:
    return (
        Q(sync_pending=False)
        | Q(sync_requested_at__lt=now - SYNC_STALE_AFTER)
        | Q(sync_requested_at__isnull=True)
    )


def _queued_status(index: VectorIndex) -> str:
    return IndexStatus.BUILDING if index.version == 0 else index.status


def collection_changed(*, collection: Collection, removal: bool = False) -> None:
    """Documents were added, replaced or removed: bring the indexes along.

    An index that follows its collection takes new documents; every index drops the vectors
    of removed or replaced documents (searches skip them already, via the chunk table)."""
    for index in VectorIndex.objects.filter(collection=collection):
        if index.follow_collection:
            index_sync_request(index=index, add_new=True)
        elif removal and index.version > 0:
            index_sync_request(index=index, add_new=False)


# --- worker side (called by gpu_worker.knowledge_tasks) -----------------------------------------


def index_sync_plan(*, index_id: int, add_new: bool | None = None) -> dict[str, Any] | None:
    """Everything a worker needs to build the next version, as plain data; None if the index
    is gone. Clears ``sync_pending``: uploads from now on queue a new sync."""
    index = VectorIndex.objects.select_related("collection").filter(pk=index_id).first()
    if index is None:
        return None
    VectorIndex.objects.filter(pk=index_id).update(
        sync_pending=False, status=IndexStatus.BUILDING, progress=0.0, message="Starting", error=""
    )
    # Documents that failed (at upload or in an earlier sync) wait for a replacement.
    documents = [document_source(d) for d in index.collection.documents.exclude(state=DocumentState.FAILED)]
    previous = storage.absolute(index.path) if index.path else None
    out_rel = f"{index.folder_relpath}/v{index.version + 1}-{uuid.uuid4().hex[:8]}"
    return {
        "index_id": index.pk,
        "workspace_id": index.workspace_id,
        "collection_id": index.collection_id,
        "base_version": index.version,
        # A first build always takes every document; later ones add new documents only when
        # asked to (or when following), and always drop removed ones.
        "add_new": index.version == 0 or (index.follow_collection if add_new is None else add_new),
        "documents": documents,
        "settings": {
            "model": index.model_name,
            "chunk_size": index.chunk_size,
            "chunk_overlap": index.chunk_overlap,
            "index_type": index.index_type,
            "metric": index.metric,
            "batch_size": index.batch_size,
        },
        "previous_dir": str(previous) if previous and previous.exists() else None,
        "out_dir": str(storage.absolute(out_rel)),
    }


def document_source(document: Document) -> dict[str, Any]:
    """A document as plain data for workers and nodes (pipelines.vectorstore.SourceDocument)."""
    parsed = storage.absolute(document.parsed_relpath)
    return {
        "id": document.pk,
        "name": document.name,
        "sha256": document.sha256,
        "kind": document.kind,
        "content_type": document.content_type,
        "size": document.size,
        "state": document.state,
        "path": str(storage.absolute(document.file_relpath)),
        "parsed_path": str(parsed) if parsed.exists() else None,
    }


def index_sync_progress(*, index_id: int, fraction: float | None, message: str) -> None:
    VectorIndex.objects.filter(pk=index_id).update(
        progress=None if fraction is None else max(0.0, min(1.0, fraction)), message=message[:300]
    )


def index_sync_failed(*, index_id: int, error: str) -> None:
    VectorIndex.objects.filter(pk=index_id).update(
        status=IndexStatus.FAILED, error=error[:4000], message="Failed", progress=None
    )
    # An index that has a good earlier version keeps serving it.
    VectorIndex.objects.filter(pk=index_id, version__gt=0).update(status=IndexStatus.READY)


def index_sync_unchanged(*, index_id: int) -> None:
    index = VectorIndex.objects.filter(pk=index_id).first()
    if index is not None:
        VectorIndex.objects.filter(pk=index_id).update(
            status=IndexStatus.READY if index.version else IndexStatus.EMPTY,
            progress=None,
            message="Up to date",
        )


def index_version_register(
    *, index_id: int, folder: str | Path, report: dict[str, Any], base_version: int, artifact_key: str = ""
) -> bool:
    """Make ``folder`` the current version if the index is still at ``base_version``.

    Fills the chunk table from chunks.jsonl (a diff by vector id when the folder was built on
    top of the current version, a full replacement otherwise) and marks documents indexed or
    failed. Returns False when another version won meanwhile (the caller retries)."""
    folder = Path(folder)
    with transaction.atomic():
        index = VectorIndex.objects.select_for_update().filter(pk=index_id).first()
        if index is None or index.version != base_version:
            return False
        meta = json.loads((folder / "meta.json").read_text())
        incremental = bool(report.get("base_version") == base_version and base_version > 0)
        _sync_chunks(index, folder, incremental=incremental)
        previous_path = index.path
        index.path = storage.relative(folder)
        index.version = base_version + 1
        index.vectors = int(meta.get("count", 0))
        index.dimension = int(meta["dimension"])
        index.built_type = str(meta.get("index_type", ""))[:8]
        index.status, index.progress, index.error = IndexStatus.READY, None, ""
        index.message = _summary(report)
        index.artifact_key = artifact_key or index.artifact_key
        index.save()
        _update_document_states(index, report)
        index_id_, keep = index.pk, {index.path, previous_path}
        folder_rel = index.folder_relpath
        transaction.on_commit(lambda: _prune_versions(folder_rel, keep))
        transaction.on_commit(lambda: _warm(index_id_))
    return True


def _summary(report: dict[str, Any]) -> str:
    parts = [f"{report.get('count', 0)} chunks from {report.get('documents', 0)} documents"]
    if report.get("added"):
        parts.append(f"+{len(report['added'])} new")
    if report.get("removed"):
        parts.append(f"-{len(report['removed'])} removed")
    if report.get("failed"):
        parts.append(f"{len(report['failed'])} failed")
    if report.get("rebuilt"):
        parts.append(f"rebuilt: {report['rebuilt']}")
    return ", ".join(parts)[:300]


def _read_chunks(folder: Path):
    with (folder / "chunks.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _sync_chunks(index: VectorIndex, folder: Path, *, incremental: bool) -> None:
    alive = set(index.collection.documents.values_list("id", flat=True))
    records = {int(r["id"]): r for r in _read_chunks(folder) if int(r["document_id"]) in alive}
    if incremental:
        existing = set(Chunk.objects.filter(index=index).values_list("vector_id", flat=True))
        Chunk.objects.filter(index=index).exclude(vector_id__in=list(records)).delete()
        new_ids = [vid for vid in records if vid not in existing]
    else:
        Chunk.objects.filter(index=index).delete()
        new_ids = list(records)
    Chunk.objects.bulk_create(
        [
            Chunk(
                workspace_id=index.workspace_id,
                index=index,
                document_id=int(records[vid]["document_id"]),
                position=int(records[vid]["position"]),
                vector_id=vid,
                text=records[vid]["text"],
                metadata=records[vid].get("metadata") or {},
            )
            for vid in new_ids
        ],
        batch_size=1000,
    )


def _update_document_states(index: VectorIndex, report: dict[str, Any]) -> None:
    documents = index.collection.documents
    for doc_id, reason in (report.get("failed") or {}).items():
        documents.filter(pk=int(doc_id)).update(state=DocumentState.FAILED, error=str(reason)[:4000])
    documents.filter(state=DocumentState.PARSED, chunks__isnull=False).update(state=DocumentState.INDEXED)
    documents.filter(state=DocumentState.INDEXED, chunks__isnull=True).update(state=DocumentState.PARSED)


def _prune_versions(folder_rel: str, keep: set[str]) -> None:
    try:
        root = storage.absolute(folder_rel)
        keep_abs = {storage.absolute(k) for k in keep if k}
        versions = sorted(
            (int(m.group(1)), child)
            for child in root.iterdir()
            if child.is_dir() and (m := _VERSION_DIR.match(child.name))
        )
    except (OSError, ValueError):
        return
    current = max((n for n, child in versions if child in keep_abs), default=0)
    for number, child in versions:
        # Never touch a newer folder: a sync may be about to register it.
        if child not in keep_abs and number < current:
            shutil.rmtree(child, ignore_errors=True)


def _warm(index_id: int) -> None:
    """Ask a serve worker to load the new version now, so the first search is fast."""
    try:
        send_task(WARM_TASK, kwargs={"index_id": index_id}, queue="serve", expires=300)
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation
        log.info("could not queue index warm-up %s: %s", index_id, exc)


def index_register_from_artifact(
    *, workspace_id: int, path: str | Path, metadata: dict[str, Any] | None = None, artifact_key: str = ""
) -> VectorIndex:
    """The hook for the run engine: a ``vectorize.faiss`` node produced the index folder at
    ``path``; make it a version of the matching index of its collection (created if needed)
    so the Knowledge page, the search API and followers see it. Safe to call twice."""
    source = Path(path)
    meta = json.loads((source / "meta.json").read_text())
    metadata = metadata or {}
    collection_id = meta.get("collection") or metadata.get("collection")
    collection = Collection.objects.filter(pk=collection_id, workspace_id=workspace_id).first()
    if collection is None:
        raise ValidationError(
            f"The index belongs to collection {collection_id}, not in workspace {workspace_id}."
        )
    requested = meta.get("requested") or {}
    lookup = {
        "collection": collection,
        "model_name": requested.get("embedding_model", meta["model"]),
        "chunk_size": int(requested.get("chunk_size", meta["chunk_size"])),
        "chunk_overlap": int(requested.get("chunk_overlap", meta["chunk_overlap"])),
        "metric": meta["metric"],
        "index_type": requested.get("index_type", meta.get("requested_index_type", "auto")),
    }
    index = VectorIndex.objects.filter(**lookup).order_by("-version").first()
    if index is None:
        index = VectorIndex.objects.create(
            workspace_id=workspace_id, name=f"{collection.name} search", follow_collection=False, **lookup
        )
    if artifact_key and index.artifact_key == artifact_key:
        return index  # already registered (the engine called twice)
    follow = bool(meta.get("follow_collection", metadata.get("follow_collection", False)))
    for _attempt in range(5):
        index.refresh_from_db()
        out_rel = f"{index.folder_relpath}/v{index.version + 1}-{uuid.uuid4().hex[:8]}"
        target = storage.absolute(out_rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        report = {
            **(meta.get("report") or {}),
            "count": meta.get("count", 0),
            "documents": len(meta.get("documents", {})),
        }
        base = meta.get("base") or {}
        # Built on top of this index's current version: chunk ids carry over, diff the table.
        reused = base.get("index") == index.pk and report.get("reused_previous")
        report["base_version"] = base.get("version") if reused else None
        if index_version_register(
            index_id=index.pk,
            folder=target,
            report=report,
            base_version=index.version,
            artifact_key=artifact_key,
        ):
            break
        shutil.rmtree(target, ignore_errors=True)
    if follow and not index.follow_collection:
        VectorIndex.objects.filter(pk=index.pk).update(follow_collection=True)
    index.refresh_from_db()
    return index
