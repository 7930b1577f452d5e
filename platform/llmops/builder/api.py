"""REST API for pipelines, node kinds and templates (mounted at /api/v1/).

Write endpoints read their JSON body themselves instead of through a ninja schema: that way
an oversized body is a 413 with a message (not Django's bare 400), malformed JSON is a 400
naming the position, and shape errors are a 422 listing each problem. The documented body
schemas are attached with ``openapi_extra`` so /api/v1/docs still shows them.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import Router
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.accounts.selectors import workspace_for_request
from llmops.builder import selectors, services
from llmops.builder.models import Pipeline, PipelineVersion
from pipelines.graph import MAX_NODES

router = Router(tags=["Pipelines"])


# --- bodies -----------------------------------------------------------------------------------


class PipelineCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=services.MAX_NAME)
    description: str = Field("", max_length=services.MAX_DESCRIPTION)
    graph: dict[str, Any] | None = Field(None, description="A graph; an empty canvas when left out.")
    template: str | None = Field(None, max_length=100, description="Start from a gallery template.")
    workspace: int | None = Field(None, description="Workspace id; the current one when left out.")
    message: str = Field("Created", max_length=services.MAX_MESSAGE)


class PipelineUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph: dict[str, Any] | None = Field(None, description="The new graph: saved as the next version.")
    name: str | None = Field(None, min_length=1, max_length=services.MAX_NAME)
    description: str | None = Field(None, max_length=services.MAX_DESCRIPTION)
    message: str = Field("", max_length=services.MAX_MESSAGE, description="What changed, for the history.")


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph: Any = None
    device: str | None = Field(None, max_length=50)


GRAPH_KEYS = {"version", "nodes", "edges"}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


def _error(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def _json_body(request: HttpRequest) -> Any:
    """The parsed body (None when empty) or ApiError 413 / 400 naming the problem."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    too_big = f"The request body is larger than the {limit // (1024 * 1024)} MB limit."
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise ApiError(413, too_big) from exc
    if len(raw) > limit:  # bodies without a Content-Length are not checked by Django
        raise ApiError(413, too_big)
    if not raw.strip():
        return None
    try:
        return services.json_parse(raw)
    except services.PipelineError as exc:
        raise ApiError(400, exc.message) from exc


def _parse(model: type[BaseModel], data: Any) -> BaseModel:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApiError(422, "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = services._pydantic_errors(exc)
        first = errors[0]
        raise ApiError(422, f"{'.'.join(first['loc']) or 'body'}: {first['message']}", errors) from exc


def _guard(handler):
    """Turn refused writes into JSON answers: 4xx with a message, never a 500."""

    @functools.wraps(handler)
    def wrapper(request, *args, **kwargs):
        try:
            return handler(request, *args, **kwargs)
        except ApiError as exc:
            return _error(exc.status, exc.detail, exc.errors)
        except services.PipelineError as exc:
            return _error(exc.status, exc.message, exc.errors)
        except PermissionDenied as exc:
            return _error(403, str(exc) or "You may not do this.")

    return wrapper


def _body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    content = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": required, "content": content}}


# --- answers ------------------------------------------------------------------------------------


def _user_name(user) -> str | None:
    return user.get_username() if user is not None else None


def version_out(version: PipelineVersion, *, graph: bool = False) -> dict[str, Any]:
    out = {
        "pipeline": version.pipeline_id, "number": version.number, "message": version.message,
        "created_by": _user_name(version.created_by), "created_at": version.created_at.isoformat(),
        "validation": version.validation, "node_count": version.node_count,
    }
    if graph:
        out["graph"] = version.graph
    return out


def pipeline_out(
    pipeline: Pipeline, *, version: PipelineVersion | None = None, graph: bool = True
) -> dict[str, Any]:
    version = version or pipeline.latest_version
    out = {
        "id": pipeline.pk, "name": pipeline.name, "description": pipeline.description,
        "workspace": pipeline.workspace_id, "created_by": _user_name(pipeline.created_by),
        "created_at": pipeline.created_at.isoformat(), "updated_at": pipeline.updated_at.isoformat(),
        "version": version.number if version else None,
        "validation": version.validation if version else None,
        "url": f"/pipelines/{pipeline.pk}/",
    }
    if graph:
        out["graph"] = version.graph if version else services.EMPTY_GRAPH
    return out


def _workspace(request, requested_id: int | None):
    """The workspace to create in: the one asked for (404 if not a member), else the current one."""
    if requested_id is not None and not 0 < requested_id < 2**63:
        raise Http404("No such workspace")
    workspace = workspace_for_request(user=request.auth, session=request.session, requested_id=requested_id)
    if workspace is None:
        raise ApiError(400, "You are not a member of any workspace.")
    return workspace


def _split_graph_body(data: Any) -> Any:
    """PUT accepts {"graph": {...}, "name": ...} or a bare graph {"version", "nodes", "edges"}."""
    if isinstance(data, dict) and "graph" not in data and GRAPH_KEYS & set(data):
        return {"graph": data}
    return data


# --- node kinds and templates ---------------------------------------------------------------


@router.get("/node-kinds", summary="Every node kind with its ports, JSON schema and defaults")
def node_kinds(request):
    return selectors.node_kinds()


@router.get("/templates", summary="The template gallery: ready-made graphs to start from")
def templates(request):
    return selectors.template_list()


# --- pipelines ----------------------------------------------------------------------------------


@router.get("/pipelines", summary="Pipelines of your workspaces (latest version's summary)")
def pipeline_list(request, workspace: int | None = None):
    qs = selectors.pipeline_list(user=request.auth)
    if workspace is not None:
        qs = qs.filter(workspace_id=workspace) if 0 < workspace < 2**63 else qs.none()
    return [pipeline_out(p, version=p.latest, graph=False) for p in selectors.with_latest(qs[:500])]


@router.post("/pipelines", summary="Create a pipeline (empty, from a graph, or from a template)",
             openapi_extra=_body_doc(PipelineCreateIn))
@_guard
def pipeline_create(request):
    body = _parse(PipelineCreateIn, _json_body(request))
    workspace = _workspace(request, body.workspace)
    if body.template:
        if body.graph is not None:
            raise ApiError(422, "Give either a graph or a template, not both.")
        pipeline = services.pipeline_create_from_template(
            workspace=workspace, user=request.auth, slug=body.template, name=body.name)
    else:
        pipeline = services.pipeline_create(
            workspace=workspace, user=request.auth, name=body.name, description=body.description,
            graph=body.graph, message=body.message)
    return JsonResponse(pipeline_out(pipeline), status=201)


@router.get("/pipelines/{int:pipeline_id}", summary="A pipeline with its latest graph")
def pipeline_detail(request, pipeline_id: int):
    return pipeline_out(selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id))


@router.put("/pipelines/{int:pipeline_id}", summary="Save a new version (graph JSON in, new version out)",
            openapi_extra=_body_doc(PipelineUpdateIn))
@_guard
def pipeline_update(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    body = _parse(PipelineUpdateIn, _split_graph_body(_json_body(request)))
    version = services.pipeline_update(
        pipeline=pipeline, user=request.auth, name=body.name, description=body.description,
        graph=body.graph, message=body.message)
    out = version_out(version, graph=True)
    out["name"], out["description"] = pipeline.name, pipeline.description
    out["report"] = services.graph_validate(graph=version.graph)
    return out


@router.delete("/pipelines/{int:pipeline_id}", summary="Delete a pipeline")
@_guard
def pipeline_delete(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    services.pipeline_delete(pipeline=pipeline, user=request.auth)
    return HttpResponse(status=204)


@router.get("/pipelines/{int:pipeline_id}/versions", summary="Every saved version, newest first")
def pipeline_versions(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    return [version_out(v) for v in selectors.pipeline_versions(pipeline=pipeline)]


@router.get("/pipelines/{int:pipeline_id}/versions/{int:number}", summary="One version with its graph")
def pipeline_version(request, pipeline_id: int, number: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    return version_out(selectors.pipeline_version_get(pipeline=pipeline, number=number), graph=True)


@router.post("/pipelines/{int:pipeline_id}/versions/{int:number}/restore",
             summary="Save an old version's graph as the newest version")
@_guard
def pipeline_restore(request, pipeline_id: int, number: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    selectors.pipeline_version_get(pipeline=pipeline, number=number)
    version = services.pipeline_restore_version(pipeline=pipeline, user=request.auth, number=number)
    return JsonResponse(version_out(version, graph=True), status=201)


@router.post("/pipelines/{int:pipeline_id}/validate",
             summary="Validate the latest graph, or the graph in the body",
             openapi_extra=_body_doc(ValidateIn, required=False))
@_guard
def pipeline_validate(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    data = _json_body(request)
    if isinstance(data, dict) and "graph" not in data and GRAPH_KEYS & set(data):
        data = {"graph": data}
    body = _parse(ValidateIn, data)
    graph = body.graph if body.graph is not None else selectors.pipeline_version_get(pipeline=pipeline).graph
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if isinstance(nodes, list) and len(nodes) > MAX_NODES:
        raise ApiError(413, f"The graph has {len(nodes)} nodes; the limit is {MAX_NODES}.")
    return services.graph_validate(graph=graph, device=body.device)


@router.post("/pipelines/{int:pipeline_id}/duplicate", summary="Copy a pipeline (latest graph) as a new one")
@_guard
def pipeline_duplicate(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    copy = services.pipeline_duplicate(pipeline=pipeline, user=request.auth)
    return JsonResponse(pipeline_out(copy), status=201)


@router.get("/pipelines/{int:pipeline_id}/export", summary="The pipeline as a JSON document to import")
def pipeline_export(request, pipeline_id: int, version: int | None = None):
    pipeline = selectors.pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    chosen = selectors.pipeline_version_get(pipeline=pipeline, number=version) if version else None
    return services.pipeline_export(pipeline=pipeline, version=chosen)


@router.post("/pipelines/import", summary="Create a pipeline from an exported document or a bare graph")
@_guard
def pipeline_import(request, workspace: int | None = None, name: str | None = None):
    data = _json_body(request)
    if data is None:
        raise ApiError(400, "The body is empty; send an exported pipeline document.")
    target = _workspace(request, workspace)
    pipeline = services.pipeline_import(workspace=target, user=request.auth, data=data, name=name)
    return JsonResponse(pipeline_out(pipeline), status=201)
