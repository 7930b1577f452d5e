"""Writes for knowledge: collections and documents (upload, replace, delete).

Uploads are checked one file at a time and every file gets its own answer (created, duplicate
or error with a reason), so one bad file never sinks the batch. Parsing runs here, in the web
process, right at upload: pypdf and python-docx are plain Python (no ML) and the user sees at
once whether the text could be read. Embedding happens on workers (see ``indexing``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from llmops.accounts.models import Role, Workspace
from llmops.accounts.selectors import user_can
from llmops.knowledge import storage
from llmops.knowledge.models import Collection, Document, DocumentState
from pipelines.docs import EXTENSIONS, DocumentError, parse, sniff
from pipelines.docs.sniff import display_name

MAX_NAME = 120
MAX_DESCRIPTION = 2000


def _require_editor(*, user, workspace: Workspace) -> None:
    if not user_can(user=user, workspace=workspace, role=Role.EDITOR):
        raise PermissionDenied("Changing documents needs the editor role in this workspace.")


def max_upload_bytes() -> int:
    return settings.LLMOPS_MAX_UPLOAD_MB * 1024 * 1024


def max_request_bytes() -> int:
    return settings.LLMOPS_MAX_REQUEST_MB * 1024 * 1024


# --- collections ------------------------------------------------------------------------------


def collection_create(*, user, workspace: Workspace, name: str, description: str = "") -> Collection:
    _require_editor(user=user, workspace=workspace)
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the collection a name.")
    if len(name) > MAX_NAME:
        raise ValidationError(f"The name is longer than {MAX_NAME} characters.")
    if len(description or "") > MAX_DESCRIPTION:
        raise ValidationError(f"The description is longer than {MAX_DESCRIPTION} characters.")
    return Collection.objects.create(
        workspace=workspace, name=name, description=description or "", created_by=user
    )


def collection_delete(*, user, collection: Collection) -> None:
    _require_editor(user=user, workspace=collection.workspace)
    folder = f"knowledge/ws{collection.workspace_id}/c{collection.pk}"
    index_folders = [index.folder_relpath for index in collection.indexes.all()]
    collection.delete()
    transaction.on_commit(lambda: [storage.remove_tree(f) for f in [folder, *index_folders]])


# --- documents --------------------------------------------------------------------------------


@dataclass
class UploadResult:
    name: str
    status: str  # created | duplicate | error
    reason: str = ""
    note: str = ""
    document: Document | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _read_upload(upload) -> bytes:
    """All bytes of an uploaded file, refusing (DocumentError) past the per-file limit."""
    limit = max_upload_bytes()
    if getattr(upload, "size", 0) and upload.size > limit:
        raise DocumentError(f"The file is larger than the {settings.LLMOPS_MAX_UPLOAD_MB} MB limit per file.")
    parts, total = [], 0
    for part in upload.chunks():
        total += len(part)
        if total > limit:
            raise DocumentError(
                f"The file is larger than the {settings.LLMOPS_MAX_UPLOAD_MB} MB limit per file."
            )
        parts.append(part)
    return b"".join(parts)


def documents_upload(*, user, collection: Collection, uploads: list) -> list[UploadResult]:
    """Store every file it can; answer each one. Indexes following the collection are
    brought up to date once, after the batch (see indexing.collection_changed)."""
    _require_editor(user=user, workspace=collection.workspace)
    results = [document_upload(user=user, collection=collection, upload=upload) for upload in uploads]
    if any(r.status == "created" for r in results):
        from llmops.knowledge.indexing import collection_changed

        Collection.objects.filter(pk=collection.pk).update(updated_at=timezone.now())
        collection_changed(collection=collection)
    return results


def document_upload(*, user, collection: Collection, upload) -> UploadResult:
    name = display_name(getattr(upload, "name", "") or "")
    try:
        data = _read_upload(upload)
    except DocumentError as exc:
        return UploadResult(name, "error", reason=str(exc))
    return document_create(user=user, collection=collection, name=name, data=data)


def document_create(*, user, collection: Collection, name: str, data: bytes) -> UploadResult:
    """One file into the collection: sniffed, parsed, stored. Never raises for bad content."""
    _require_editor(user=user, workspace=collection.workspace)
    name = display_name(name)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = collection.documents.filter(sha256=sha256).first()
    if existing is not None:
        return _duplicate(name, existing)
    try:
        sniffed = sniff(data, name)
    except DocumentError as exc:
        return UploadResult(name, "error", reason=str(exc))
    document = Document(
        workspace=collection.workspace,
        collection=collection,
        name=name,
        kind=sniffed.kind,
        content_type=sniffed.content_type,
        size=len(data),
        sha256=sha256,
        uploaded_by=user,
        storage_name=uuid.uuid4().hex + EXTENSIONS[sniffed.kind],
        note=sniffed.note,
    )
    _parse_into(document, data)
    try:
        with transaction.atomic():
            storage.write_atomic(document.file_relpath, data)
            document.save()
    except IntegrityError:
        # The same bytes were uploaded concurrently and the other request won the race.
        _remove_files(document)
        existing = collection.documents.filter(sha256=sha256).first()
        return _duplicate(name, existing) if existing else UploadResult(name, "error", reason="Please retry.")
    except BaseException:
        _remove_files(document)
        raise
    if document.state == DocumentState.FAILED:
        return UploadResult(name, "error", reason=document.error, note=document.note, document=document)
    return UploadResult(name, "created", note=document.note, document=document)


def _duplicate(name: str, existing: Document) -> UploadResult:
    return UploadResult(
        name,
        "duplicate",
        document=existing,
        reason=f"The same content is already in this collection as “{existing.name}”.",
    )


def _parse_into(document: Document, data: bytes) -> None:
    """Parse now; on success write the parsed JSON, on failure record the reason.

    A document whose content cannot be read (encrypted or damaged PDF, no text) is still
    stored, as failed with its reason, so the user sees it in the list and can replace it."""
    try:
        parsed = parse(data, document.kind)
    except DocumentError as exc:
        document.state, document.error = DocumentState.FAILED, str(exc)
        return
    storage.write_atomic(document.parsed_relpath, json.dumps(parsed.to_json(), ensure_ascii=False).encode())
    document.state, document.error = DocumentState.PARSED, ""
    document.text_chars = len(parsed.text)
    document.pages = max((n for _, n in parsed.pages), default=None)
    document.title = parsed.title[:200]
    document.note = "\n".join(x for x in [document.note, *parsed.warnings] if x)


def _remove_files(document: Document) -> None:
    storage.remove_file(document.file_relpath)
    storage.remove_file(document.parsed_relpath)


def document_delete(*, user, document: Document) -> None:
    """Delete the document, its chunks and files; its vectors leave every index of the
    collection at the next sync (queued here), and searches skip them from now on."""
    _require_editor(user=user, workspace=document.workspace)
    from llmops.knowledge.indexing import collection_changed

    collection = document.collection
    relpaths = [document.file_relpath, document.parsed_relpath]
    document.delete()
    transaction.on_commit(lambda: [storage.remove_file(p) for p in relpaths])
    collection_changed(collection=collection, removal=True)


def document_replace(*, user, document: Document, upload) -> UploadResult:
    """New content for an existing document (same id, same place in the list)."""
    _require_editor(user=user, workspace=document.workspace)
    name = display_name(getattr(upload, "name", "") or document.name)
    try:
        data = _read_upload(upload)
        sniffed = sniff(data, name)
    except DocumentError as exc:
        return UploadResult(name, "error", reason=str(exc), document=document)
    sha256 = hashlib.sha256(data).hexdigest()
    other = document.collection.documents.filter(sha256=sha256).exclude(pk=document.pk).first()
    if other is not None:
        return _duplicate(name, other)
    old_paths = [document.file_relpath, document.parsed_relpath]
    document.name, document.kind, document.content_type = name, sniffed.kind, sniffed.content_type
    document.size, document.sha256, document.note = len(data), sha256, sniffed.note
    document.storage_name = uuid.uuid4().hex + EXTENSIONS[sniffed.kind]
    document.text_chars, document.pages, document.title = 0, None, ""
    _parse_into(document, data)
    storage.write_atomic(document.file_relpath, data)
    with transaction.atomic():
        document.save()
        document.chunks.all().delete()  # the old text's passages no longer exist
        transaction.on_commit(lambda: [storage.remove_file(p) for p in old_paths])
    from llmops.knowledge.indexing import collection_changed

    collection_changed(collection=document.collection, removal=True)  # the old content's vectors go
    status = "error" if document.state == DocumentState.FAILED else "created"
    return UploadResult(name, status, reason=document.error, note=document.note, document=document)
