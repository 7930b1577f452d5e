"""REST API for collections, documents, indexes and search (mounted at /api/v1/).

Bodies are read by the handlers themselves (JSON via ``_json``, multipart via ``request.FILES``)
so that every refusal is a JSON answer with a message: 413 for a request over the size limit,
400/422 for bad input, 404 for anything outside the caller's workspaces, 503 when no search
worker answers. Uploads answer per file: ``created``, ``duplicate`` or ``error`` with a reason.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent, ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Router
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can, workspace_for_request
from llmops.knowledge import indexing, selectors, services
from llmops.knowledge.models import Collection, Document, VectorIndex
from llmops.knowledge.search import MAX_K, MAX_QUERY, SearchError, index_search

router = Router(tags=["Knowledge"])


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=services.MAX_NAME)
    description: str = Field("", max_length=services.MAX_DESCRIPTION)
    workspace: int | None = Field(None, description="Workspace id; the current one when left out.")


class IndexIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=120)
    embedding_model: str | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    index_type: str | None = None
    metric: str | None = None
    batch_size: int | None = None
    follow_collection: bool = True


class IndexPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=120)
    follow_collection: bool | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    k: int = Field(5, ge=1, le=MAX_K)
    model: str | None = Field(None, max_length=500, description="The model you expect; must be the index's.")


class ApiError(Exception):
    def __init__(self, status: int, detail: str, errors: list | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


def _guard(handler):
    @functools.wraps(handler)
    def wrapper(request, *args, **kwargs):
        try:
            return handler(request, *args, **kwargs)
        except ApiError as exc:
            body = {"detail": exc.detail, **({"errors": exc.errors} if exc.errors else {})}
            return JsonResponse(body, status=exc.status)
        except SearchError as exc:
            return JsonResponse({"detail": exc.message}, status=exc.status)
        except ValidationError as exc:
            return JsonResponse({"detail": " ".join(exc.messages)}, status=422)
        except PermissionDenied as exc:
            return JsonResponse({"detail": str(exc) or "You may not do this."}, status=403)

    return wrapper


def _json(request: HttpRequest, model: type[BaseModel]) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise ApiError(413, "The request body is too large.") from exc
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"Malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(
            422, f"{'.'.join(errors[0]['loc']) or 'body'}: {errors[0]['message']}", errors
        ) from exc


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _files_doc(field: str, many: bool) -> dict[str, Any]:
    item = {"type": "string", "format": "binary"}
    schema = {
        "type": "object",
        "required": [field],
        "properties": {field: {"type": "array", "items": item} if many else item},
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def uploaded_files(request: HttpRequest, field: str) -> list:
    """The request's files in ``field``, after the per-request size limit (413 above it)."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > services.max_request_bytes():
        raise ApiError(
            413,
            f"The upload is larger than the {settings.LLMOPS_MAX_REQUEST_MB} MB limit per "
            f"request (files may be up to {settings.LLMOPS_MAX_UPLOAD_MB} MB each): send "
            "fewer files at a time.",
        )
    try:
        files = request.FILES.getlist(field)
    except TooManyFilesSent as exc:
        raise ApiError(
            400, f"Too many files in one request (at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES})."
        ) from exc
    except RequestDataTooBig as exc:
        raise ApiError(413, "The request is too large.") from exc
    if not files:
        raise ApiError(400, f"No files: send them as multipart/form-data in the field {field!r}.")
    return files


# --- answers -----------------------------------------------------------------------------------


def collection_out(collection: Collection, *, detail: bool = False) -> dict[str, Any]:
    out = {
        "id": collection.pk,
        "name": collection.name,
        "description": collection.description,
        "workspace": collection.workspace_id,
        "created_at": collection.created_at.isoformat(),
        "updated_at": collection.updated_at.isoformat(),
        "url": reverse("knowledge:collection", args=[collection.pk]),
    }
    for attr in ("document_count", "failed_count", "index_count"):
        if hasattr(collection, attr):
            out[attr.replace("_count", "s")] = getattr(collection, attr)
    if detail:
        out["states"] = selectors.state_counts(collection=collection)
        out["documents"] = sum(out["states"].values())
        out["indexes"] = [index_out(i) for i in collection.indexes.order_by("-updated_at")]
    return out


def document_out(document: Document) -> dict[str, Any]:
    return {
        "id": document.pk,
        "collection": document.collection_id,
        "name": document.name,
        "kind": document.kind,
        "content_type": document.content_type,
        "size": document.size,
        "sha256": document.sha256,
        "state": document.state,
        "error": document.error,
        "note": document.note,
        "text_chars": document.text_chars,
        "pages": document.pages,
        "title": document.title,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
        "url": reverse("knowledge:document", args=[document.pk]),
    }


def index_out(index: VectorIndex) -> dict[str, Any]:
    return {
        "id": index.pk,
        "name": index.name,
        "collection": index.collection_id,
        "embedding_model": index.model_name,
        "dimension": index.dimension,
        "index_type": index.index_type,
        "built_type": index.built_type,
        "metric": index.metric,
        "chunk_size": index.chunk_size,
        "chunk_overlap": index.chunk_overlap,
        "follow_collection": index.follow_collection,
        "version": index.version,
        "vectors": index.vectors,
        "status": index.status,
        "progress": index.progress,
        "message": index.message,
        "error": index.error,
        "updated_at": index.updated_at.isoformat(),
    }


def upload_out(result: services.UploadResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "status": result.status,
        "reason": result.reason,
        "note": result.note,
        "document": document_out(result.document) if result.document is not None else None,
    }


# --- collections -------------------------------------------------------------------------------


@router.get("/collections", summary="Document collections of your workspaces")
def collection_list(request, workspace: int | None = None):
    qs = selectors.collection_list(user=request.auth)
    if workspace is not None:
        qs = qs.filter(workspace_id=workspace)
    return JsonResponse({"items": [collection_out(c) for c in qs]})


@router.post("/collections", summary="Create a collection", openapi_extra=_body_doc(CollectionIn))
@_guard
def collection_create(request):
    body = _json(request, CollectionIn)
    workspace = workspace_for_request(
        user=request.auth, session=getattr(request, "session", None), requested_id=body.workspace
    )
    if workspace is None:
        raise ApiError(400, "You are not a member of any workspace.")
    collection = services.collection_create(
        user=request.auth, workspace=workspace, name=body.name, description=body.description
    )
    return JsonResponse(collection_out(collection, detail=True), status=201)


@router.get("/collections/{int:collection_id}", summary="A collection with its document states and indexes")
def collection_detail(request, collection_id: int):
    collection = selectors.collection_get(user=request.auth, collection_id=collection_id)
    return JsonResponse(collection_out(collection, detail=True))


@router.delete(
    "/collections/{int:collection_id}",
    summary="Delete a collection, its documents and indexes",
    response={204: None},
)
@_guard
def collection_delete(request, collection_id: int):
    collection = selectors.collection_get(user=request.auth, collection_id=collection_id)
    services.collection_delete(user=request.auth, collection=collection)
    return 204, None


# --- documents ---------------------------------------------------------------------------------


@router.get("/collections/{int:collection_id}/documents", summary="Documents of a collection")
def document_list(request, collection_id: int):
    collection = selectors.collection_get(user=request.auth, collection_id=collection_id)
    return JsonResponse({"items": [document_out(d) for d in selectors.document_list(collection=collection)]})


@router.post(
    "/collections/{int:collection_id}/documents",
    openapi_extra=_files_doc("files", many=True),
    summary="Upload documents (multipart field `files`, several at once); one answer per file",
)
@_guard
def document_upload(request, collection_id: int):
    collection = selectors.collection_get(user=request.auth, collection_id=collection_id)
    files = uploaded_files(request, "files")
    results = services.documents_upload(user=request.auth, collection=collection, uploads=files)
    counts = {
        status: sum(r.status == status for r in results) for status in ("created", "duplicate", "error")
    }
    return JsonResponse({"results": [upload_out(r) for r in results], **counts})


@router.get("/documents/{int:document_id}", summary="A document; ?text=true adds its extracted text")
def document_detail(request, document_id: int, text: bool = False):
    document = selectors.document_get(user=request.auth, document_id=document_id)
    out = document_out(document)
    if text:
        parsed = selectors.document_parsed(document=document)
        out["text"] = parsed["text"] if parsed else None
    return JsonResponse(out)


@router.delete(
    "/documents/{int:document_id}", summary="Delete a document and its passages", response={204: None}
)
@_guard
def document_delete(request, document_id: int):
    document = selectors.document_get(user=request.auth, document_id=document_id)
    services.document_delete(user=request.auth, document=document)
    return 204, None


@router.post(
    "/documents/{int:document_id}/replace",
    openapi_extra=_files_doc("file", many=False),
    summary="Replace a document's content (multipart field `file`)",
)
@_guard
def document_replace(request, document_id: int):
    document = selectors.document_get(user=request.auth, document_id=document_id)
    files = uploaded_files(request, "file")
    result = services.document_replace(user=request.auth, document=document, upload=files[0])
    return JsonResponse(upload_out(result))


# --- indexes -----------------------------------------------------------------------------------


@router.get("/indexes", summary="Search indexes of your workspaces")
def index_list(request, collection: int | None = None):
    qs = selectors.index_list(user=request.auth)
    if collection is not None:
        qs = qs.filter(collection_id=collection)
    return JsonResponse({"items": [index_out(i) for i in qs]})


@router.post(
    "/collections/{int:collection_id}/indexes",
    openapi_extra=_body_doc(IndexIn),
    summary="Create a search index of a collection (built on a worker right away)",
)
@_guard
def index_create(request, collection_id: int):
    collection = selectors.collection_get(user=request.auth, collection_id=collection_id)
    body = _json(request, IndexIn)
    params = body.model_dump(exclude={"name", "follow_collection"})
    index = indexing.index_create(
        user=request.auth,
        collection=collection,
        name=body.name,
        follow_collection=body.follow_collection,
        **params,
    )
    return JsonResponse(index_out(index), status=201)


@router.get("/indexes/{int:index_id}", summary="A search index: settings, version, status")
def index_detail(request, index_id: int):
    return JsonResponse(index_out(selectors.index_get(user=request.auth, index_id=index_id)))


@router.patch("/indexes/{int:index_id}", openapi_extra=_body_doc(IndexPatch), summary="Rename or (un)follow")
@_guard
def index_patch(request, index_id: int):
    index = selectors.index_get(user=request.auth, index_id=index_id)
    body = _json(request, IndexPatch)
    index = indexing.index_update(
        user=request.auth, index=index, name=body.name, follow_collection=body.follow_collection
    )
    return JsonResponse(index_out(index))


@router.post("/indexes/{int:index_id}/sync", summary="Bring the index up to date with its collection now")
@_guard
def index_sync(request, index_id: int):
    index = selectors.index_get(user=request.auth, index_id=index_id)
    if not user_can(user=request.auth, workspace=index.workspace, role=Role.EDITOR):
        raise PermissionDenied("Updating an index needs the editor role in this workspace.")
    queued = indexing.index_sync_request(index=index, add_new=True, countdown=0)
    return JsonResponse(
        {"queued": queued, "index": index_out(selectors.index_get(user=request.auth, index_id=index_id))},
        status=202,
    )


@router.delete("/indexes/{int:index_id}", summary="Delete a search index", response={204: None})
@_guard
def index_delete(request, index_id: int):
    index = selectors.index_get(user=request.auth, index_id=index_id)
    indexing.index_delete(user=request.auth, index=index)
    return 204, None


@router.post(
    "/indexes/{int:index_id}/search",
    openapi_extra=_body_doc(SearchIn),
    summary="Top-k passages for a query: document names, scores and text",
)
@_guard
def search(request, index_id: int):
    index = selectors.index_get(user=request.auth, index_id=index_id)
    body = _json(request, SearchIn)
    return JsonResponse(index_search(index=index, query=body.query, k=body.k, model=body.model))
