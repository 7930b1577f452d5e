"""What the run engine hands to nodes through ``ctx.resource(kind, ref)``: plain data only.

    ctx.resource("collection", 5)       -> collection_resource(workspace_id=..., ref=5)
    ctx.resource("vector_index", {...}) -> vector_index_resource(workspace_id=..., ref={...})

Both resolve within the run's workspace; anything else is a NodeFailure with a message for
the user, exactly as if the collection or index did not exist.
"""

from __future__ import annotations

from typing import Any

from llmops.knowledge.indexing import document_source
from llmops.knowledge.models import Collection, DocumentState, VectorIndex
from llmops.knowledge.storage import absolute
from pipelines.context import NodeFailure


def _int_ref(ref: Any, what: str) -> int:
    if isinstance(ref, dict):
        ref = ref.get("id", ref.get("collection"))
    try:
        value = int(ref)
    except (TypeError, ValueError):
        raise NodeFailure(f"{what} must be an id (a whole number), not {ref!r}.") from None
    if value < 1:
        raise NodeFailure(f"{what} must be a positive id, not {value}.")
    return value


def collection_resource(*, workspace_id: int, ref: Any) -> list[dict[str, Any]]:
    """The usable documents of a collection: one dict per document with ``id``, ``name``,
    ``path`` (the stored original, absolute), ``content_type``, ``kind``, ``sha256``, ``size``,
    ``state`` and ``parsed_path``/``text_path`` (the extracted text as JSON, or None).
    Documents that failed to parse are left out."""
    collection_id = _int_ref(ref, "The collection")
    collection = Collection.objects.filter(pk=collection_id, workspace_id=workspace_id).first()
    if collection is None:
        raise NodeFailure(
            f"Document collection {collection_id} does not exist in this workspace. "
            "Pick a collection from the Knowledge page."
        )
    documents = []
    for document in collection.documents.exclude(state=DocumentState.FAILED).order_by("id"):
        item = document_source(document)
        item["text_path"] = item["parsed_path"]
        item["collection_id"] = collection.pk
        documents.append(item)
    return documents


def vector_index_resource(*, workspace_id: int, ref: Any) -> dict[str, Any] | None:
    """The current version of an index, for an incremental rebuild or for serving.

    ``ref`` is an index id, or a dict describing what a vectorize node builds (collection,
    embedding_model, chunk_size, chunk_overlap, metric, index_type): then the matching index of
    that collection, or None when there is none yet (the node builds from scratch)."""
    if isinstance(ref, dict) and "collection" in ref and "id" not in ref:
        collection_id = _int_ref(ref["collection"], "The collection")
        if not Collection.objects.filter(pk=collection_id, workspace_id=workspace_id).exists():
            raise NodeFailure(f"Document collection {collection_id} does not exist in this workspace.")
        lookup = {"collection_id": collection_id}
        for key, field in (
            ("embedding_model", "model_name"),
            ("chunk_size", "chunk_size"),
            ("chunk_overlap", "chunk_overlap"),
            ("metric", "metric"),
            ("index_type", "index_type"),
        ):
            if ref.get(key) is not None:
                lookup[field] = ref[key]
        index = (
            VectorIndex.objects.filter(workspace_id=workspace_id, version__gt=0, **lookup)
            .order_by("-updated_at")
            .first()
        )
        if index is None:
            return None
    else:
        index_id = _int_ref(ref, "The index")
        index = VectorIndex.objects.filter(pk=index_id, workspace_id=workspace_id).first()
        if index is None:
            raise NodeFailure(f"Search index {index_id} does not exist in this workspace.")
    path = absolute(index.path) if index.path else None
    return {
        "id": index.pk,
        "collection_id": index.collection_id,
        "version": index.version,
        "path": str(path) if path and path.exists() else None,
        "model": index.model_name,
        "dimension": index.dimension,
        "metric": index.metric,
        "index_type": index.index_type,
        "chunk_size": index.chunk_size,
        "chunk_overlap": index.chunk_overlap,
        "follow_collection": index.follow_collection,
        "vectors": index.vectors,
    }
