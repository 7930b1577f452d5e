"""Reads for knowledge. Every read goes through ``for_user``: another workspace's collection,
document or index is a 404, whether or not it exists."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Count, Q
from django.http import Http404

from llmops.knowledge import storage
from llmops.knowledge.models import Collection, Document, DocumentState, IndexStatus, VectorIndex


def collection_list(*, user, workspace=None):
    qs = Collection.objects.for_user(user)
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    return qs.annotate(
        document_count=Count("documents", distinct=True),
        failed_count=Count("documents", filter=Q(documents__state=DocumentState.FAILED), distinct=True),
        index_count=Count("indexes", distinct=True),
    ).order_by("-updated_at", "-id")


def collection_get(*, user, collection_id: int) -> Collection:
    collection = (
        Collection.objects.for_user(user).select_related("workspace").filter(pk=collection_id).first()
    )
    if collection is None:
        raise Http404("No such collection")
    return collection


def document_list(*, collection: Collection):
    return collection.documents.select_related("uploaded_by").order_by("-created_at", "-id")


def document_get(*, user, document_id: int) -> Document:
    document = (
        Document.objects.for_user(user)
        .select_related("collection", "workspace")
        .filter(pk=document_id)
        .first()
    )
    if document is None:
        raise Http404("No such document")
    return document


def document_parsed(*, document: Document) -> dict[str, Any] | None:
    """The extracted text and its structure (pages, warnings), or None when not parsed."""
    try:
        return json.loads(storage.absolute(document.parsed_relpath).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def state_counts(*, collection: Collection) -> dict[str, int]:
    counts = {state.value: 0 for state in DocumentState}
    for row in collection.documents.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return counts


def index_list(*, user, collection: Collection | None = None):
    qs = VectorIndex.objects.for_user(user).select_related("collection")
    if collection is not None:
        qs = qs.filter(collection=collection)
    return qs.order_by("-updated_at", "-id")


def index_get(*, user, index_id: int) -> VectorIndex:
    index = (
        VectorIndex.objects.for_user(user)
        .select_related("collection", "workspace")
        .filter(pk=index_id)
        .first()
    )
    if index is None:
        raise Http404("No such index")
    return index


def collection_busy(*, collection: Collection) -> bool:
    """Whether the page should keep refreshing: an index is building or a sync is queued,
    or a following index has documents it has not taken in yet."""
    indexes = list(collection.indexes.all())
    if any(i.status == IndexStatus.BUILDING or i.sync_pending for i in indexes):
        return True
    following = [i for i in indexes if i.follow_collection]
    return bool(following) and collection.documents.filter(state=DocumentState.PARSED).exists()
