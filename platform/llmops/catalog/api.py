"""REST API for models and datasets (mounted at /api/v1/).

    GET  /models                 registered models of your workspaces, plus the demo model
    POST /models                 register {"reference": hub id or folder, "name", "revision", "workspace"}
    GET  /models/{id}            one model
    DELETE /models/{id}
    GET  /datasets               datasets of your workspaces
    POST /datasets               multipart: file (required), name, format, workspace
    GET  /datasets/{id}          one dataset with its preview rows and row errors
    DELETE /datasets/{id}

Another workspace's model or dataset is a 404, exactly like a missing one. Refusals are JSON
``{"detail": ..., "errors": {field: [messages]}}`` with 400/403/413/422, never a 500.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Router
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from llmops.accounts.selectors import workspace_for_request
from llmops.catalog import selectors, services
from llmops.catalog.models import Dataset, ModelEntry

router = Router(tags=["Models and datasets"])


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(
        min_length=1, max_length=500, description="A hub id (org/name) or an absolute folder path."
    )
    name: str = Field("", max_length=services.MAX_NAME)
    revision: str = Field("", max_length=100)
    trust_remote_code: bool = False
    workspace: int | None = Field(None, description="Workspace id; the current one when left out.")


class FromCollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: int = Field(ge=1, description="A document collection of the workspace.")
    name: str = Field("", max_length=services.MAX_NAME)
    workspace: int | None = Field(None, description="Workspace id; the current one when left out.")


class ApiError(Exception):
    def __init__(self, status: int, detail: str, errors: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or {}


def _guard(handler):
    @functools.wraps(handler)
    def wrapper(request, *args, **kwargs):
        try:
            return handler(request, *args, **kwargs)
        except ApiError as exc:
            return JsonResponse(
                {"detail": exc.detail, **({"errors": exc.errors} if exc.errors else {})}, status=exc.status
            )
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
            return JsonResponse({"detail": " ".join(exc.messages), "errors": errors}, status=422)
        except PermissionDenied as exc:
            return JsonResponse({"detail": str(exc) or "You may not do this."}, status=403)

    return wrapper


def _workspace(request: HttpRequest, requested: Any):
    try:
        requested_id = int(requested) if requested not in (None, "") else None
    except (TypeError, ValueError):
        raise ApiError(422, "workspace: must be a workspace id") from None
    workspace = workspace_for_request(
        user=request.auth, session=getattr(request, "session", None), requested_id=requested_id
    )
    if workspace is None:
        raise ApiError(400, "You are not a member of any workspace.")
    return workspace


def _json(request: HttpRequest, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(request.body or b"{}")
    except RequestDataTooBig as exc:
        raise ApiError(413, "The request body is too large.") from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"Malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False, include_input=False):
            errors.setdefault(".".join(str(p) for p in error["loc"]) or "body", []).append(error["msg"])
        field, messages = next(iter(errors.items()))
        raise ApiError(422, f"{field}: {messages[0]}", errors) from exc


def model_out(entry: ModelEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "name": entry.name,
        "source": entry.source,
        "reference": entry.reference,
        "revision": entry.revision,
        "status": entry.status,
        "status_detail": entry.status_detail,
        "architecture": entry.architecture,
        "model_type": entry.model_type,
        "parameters": entry.parameters,
        "dtype": entry.dtype,
        "size_bytes": entry.size_bytes,
        "context_length": entry.context_length,
        "target_modules": entry.info.get("projection_modules", []),
        "has_chat_template": entry.info.get("has_chat_template"),
        "trust_remote_code": entry.trust_remote_code,
        "workspace": entry.workspace_id,
        "created_at": entry.created_at.isoformat(),
    }


def demo_out() -> dict[str, Any]:
    demo = selectors.demo_model()
    info = demo.get("info") or {}
    return {
        "id": None,
        "name": demo["name"],
        "source": "demo",
        "reference": "demo",
        "status": "ready" if demo["built"] else "not built",
        "status_detail": "Bundled with the platform."
        if demo["built"]
        else "Built on first use, or now with `llmops demo-model`.",
        "architecture": info.get("architecture"),
        "parameters": info.get("parameters"),
        "dtype": info.get("dtype"),
        "size_bytes": info.get("size_bytes"),
        "context_length": info.get("max_position_embeddings"),
        "target_modules": info.get("projection_modules", []),
        "has_chat_template": info.get("has_chat_template"),
    }


def dataset_out(dataset: Dataset, *, detail: bool = False) -> dict[str, Any]:
    out = {
        "id": dataset.pk,
        "name": dataset.name,
        "filename": dataset.filename,
        "format": dataset.format,
        "size": dataset.size,
        "sha256": dataset.sha256,
        "rows": dataset.rows,
        "error_count": dataset.error_count,
        "labels": dataset.labels,
        "workspace": dataset.workspace_id,
        "created_at": dataset.created_at.isoformat(),
        "url": reverse("catalog:dataset", args=[dataset.pk]),
    }
    if detail:
        out["preview"] = dataset.preview
        out["errors"] = dataset.errors
    return out


@router.get("/models", summary="Registered models of your workspaces, and the bundled demo model")
def model_list(request, workspace: int | None = None):
    qs = selectors.model_list(user=request.auth)
    if workspace is not None:
        qs = qs.filter(workspace_id=workspace)
    return JsonResponse({"demo": demo_out(), "items": [model_out(m) for m in qs]})


@router.post(
    "/models",
    summary="Register a model by hub id or local folder path",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ModelIn.model_json_schema()}},
        }
    },
)
@_guard
def model_register(request):
    body = _json(request, ModelIn)
    entry = services.model_register(
        user=request.auth,
        workspace=_workspace(request, body.workspace),
        reference=body.reference,
        name=body.name,
        revision=body.revision,
        trust_remote_code=body.trust_remote_code,
    )
    return JsonResponse(model_out(entry), status=201)


@router.get("/models/{int:model_id}", summary="One registered model")
def model_detail(request, model_id: int):
    return JsonResponse(model_out(selectors.model_get(user=request.auth, model_id=model_id)))


@router.delete(
    "/models/{int:model_id}", summary="Forget a registered model (its files stay)", response={204: None}
)
@_guard
def model_delete(request, model_id: int):
    services.model_delete(user=request.auth, entry=selectors.model_get(user=request.auth, model_id=model_id))
    return 204, None


@router.get("/datasets", summary="Datasets of your workspaces")
def dataset_list(request, workspace: int | None = None):
    qs = selectors.dataset_list(user=request.auth)
    if workspace is not None:
        qs = qs.filter(workspace_id=workspace)
    return JsonResponse({"items": [dataset_out(d) for d in qs]})


@router.post(
    "/datasets",
    summary="Upload a dataset (multipart: file, name, format, workspace)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "name": {"type": "string"},
                            "format": {"type": "string", "enum": list(services.DATASET_FORMATS)},
                            "workspace": {"type": "integer"},
                        },
                    }
                }
            },
        }
    },
)
@_guard
def dataset_upload(request):
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.LLMOPS_MAX_REQUEST_MB * 1024 * 1024:
        raise ApiError(
            413, f"The upload is larger than the {settings.LLMOPS_MAX_REQUEST_MB} MB request limit."
        )
    try:
        upload, form = request.FILES.get("file"), request.POST
    except RequestDataTooBig as exc:
        raise ApiError(413, "The request is too large.") from exc
    if upload is None:
        raise ApiError(
            400,
            "No file: send it as multipart/form-data in the field 'file'.",
            {"file": ["This field is required."]},
        )
    dataset = services.dataset_upload(
        user=request.auth,
        workspace=_workspace(request, form.get("workspace")),
        upload=upload,
        name=form.get("name", ""),
        format=form.get("format") or "auto",
    )
    return JsonResponse(dataset_out(dataset, detail=True), status=201)


@router.post(
    "/datasets/from-collection",
    summary="A plain-text dataset from a document collection (one row per paragraph)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": FromCollectionIn.model_json_schema()}},
        }
    },
)
@_guard
def dataset_from_collection(request):
    body = _json(request, FromCollectionIn)
    dataset = services.dataset_from_collection(
        user=request.auth,
        workspace=_workspace(request, body.workspace),
        collection_id=body.collection,
        name=body.name,
    )
    return JsonResponse(dataset_out(dataset, detail=True), status=201)


@router.post(
    "/datasets/samples/{sample}",
    summary="Add a sample dataset shipped with the platform (news, platform-chat)",
)
@_guard
def dataset_sample(request, sample: str, workspace: int | None = None):
    dataset = services.dataset_create_sample(
        user=request.auth, workspace=_workspace(request, workspace), sample=sample
    )
    return JsonResponse(dataset_out(dataset, detail=True), status=201)


@router.get("/datasets/{int:dataset_id}", summary="One dataset with its preview rows and row errors")
def dataset_detail(request, dataset_id: int):
    return JsonResponse(
        dataset_out(selectors.dataset_get(user=request.auth, dataset_id=dataset_id), detail=True)
    )


@router.delete("/datasets/{int:dataset_id}", summary="Delete a dataset and its file", response={204: None})
@_guard
def dataset_delete(request, dataset_id: int):
    services.dataset_delete(
        user=request.auth, dataset=selectors.dataset_get(user=request.auth, dataset_id=dataset_id)
    )
    return 204, None
