"""REST API for runs, their events and artifacts (mounted at /api/v1/). Shapes: EVENTS.md.

The start endpoint reads its (optional) JSON body itself, so an empty body means defaults and
a malformed one is a 400 with a message rather than a 422 about a schema.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from ninja import Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.builder.selectors import pipeline_get
from llmops.runs import reports, selectors, services, storage
from llmops.runs.models import RunStatus

router = Router(tags=["Runs"])

MAX_LIST = 200


class RunStartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Run every node even when cached outputs exist.")


class RunListQuery(BaseModel):
    pipeline: int | None = None
    status: RunStatus | None = None
    limit: int = Field(50, ge=1, le=MAX_LIST)


class EventsQuery(BaseModel):
    after: int = Field(0, ge=0, description="Only events with a larger sequence number.")
    limit: int = Field(selectors.MAX_EVENTS_PAGE, ge=1, le=selectors.MAX_EVENTS_PAGE)


def _error(exc: services.RunError) -> JsonResponse:
    body = {"detail": exc.message, "errors": exc.errors}
    if exc.warnings:
        body["warnings"] = exc.warnings
    return JsonResponse(body, status=exc.status)


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        data = json.loads(request.body)
    except ValueError as exc:
        raise services.RunError(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise services.RunError("The body must be a JSON object.")
    return data


@router.post(
    "/pipelines/{pipeline_id}/runs",
    response={201: dict},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": RunStartIn.model_json_schema()}},
            "required": False,
        }
    },
)
def run_create(request: HttpRequest, pipeline_id: int):
    """Run the pipeline's latest saved version; 422 with the validation report when invalid."""
    pipeline = pipeline_get(user=request.auth, pipeline_id=pipeline_id)
    try:
        body = RunStartIn.model_validate(_body(request))
    except ValidationError as exc:
        return JsonResponse({"detail": "Invalid body.", "errors": exc.errors(include_url=False)}, status=422)
    except services.RunError as exc:
        return _error(exc)
    try:
        run = services.run_start(user=request.auth, pipeline=pipeline, force=body.force)
    except services.RunError as exc:
        return _error(exc)
    return Status(201, selectors.run_state(selectors.run_get(user=request.auth, run_id=run.pk)))


@router.get("/runs", response=list[dict])
def run_list(request: HttpRequest, filters: Query[RunListQuery]):
    runs = selectors.run_list(user=request.auth, pipeline_id=filters.pipeline, status=filters.status)
    return [selectors.run_summary(run) for run in runs[: filters.limit]]


@router.get("/runs/{run_id}", response=dict)
def run_detail(request: HttpRequest, run_id: int):
    """The run's status and each node's status, progress, message, ETA, attempt, worker."""
    return selectors.run_state(selectors.run_get(user=request.auth, run_id=run_id))


@router.get("/runs/{run_id}/report", response=dict)
def run_report(request: HttpRequest, run_id: int):
    """Every report of the run (training, evaluation, quantization) as JSON, plus the seed's
    comparison table (method, memory, training time, inference speed, accuracy drop) when the
    run trained or quantized at least two variants."""
    run = selectors.run_get(user=request.auth, run_id=run_id)
    found = reports.run_reports(run=run)
    return {"run": run.pk, "status": run.status, "reports": found,
            "comparison": reports.run_comparison(run=run, reports=found)}


@router.post("/runs/{run_id}/cancel", response=dict)
def run_cancel(request: HttpRequest, run_id: int):
    run = selectors.run_get(user=request.auth, run_id=run_id)
    try:
        services.run_cancel(user=request.auth, run=run)
    except services.RunError as exc:
        return _error(exc)
    return selectors.run_state(selectors.run_get(user=request.auth, run_id=run_id))


@router.post("/runs/{run_id}/nodes/{node_id}/retry", response=dict)
def node_retry(request: HttpRequest, run_id: int, node_id: str):
    run = selectors.run_get(user=request.auth, run_id=run_id)
    try:
        services.node_retry(user=request.auth, run=run, node_id=node_id)
    except services.RunError as exc:
        return _error(exc)
    return selectors.run_state(selectors.run_get(user=request.auth, run_id=run_id))


@router.get("/runs/{run_id}/events", response=dict)
def run_events(request: HttpRequest, run_id: int, query: Query[EventsQuery]):
    """Stored events after ``after``, oldest first (the websocket replays the same list)."""
    run = selectors.run_get(user=request.auth, run_id=run_id)
    events = selectors.events_after(run_id=run.pk, after=query.after, limit=query.limit)
    return {
        "run": run.pk,
        "status": run.status,
        "events": events,
        "last_seq": events[-1]["seq"] if events else query.after,
    }


@router.get("/artifacts/{artifact_id}", response=dict)
def artifact_detail(request: HttpRequest, artifact_id: int):
    """An artifact's type, size, content hash, metadata and lineage."""
    return selectors.artifact_dict(selectors.artifact_get(user=request.auth, artifact_id=artifact_id))


@router.get("/artifacts/{artifact_id}/download")
def artifact_download(request: HttpRequest, artifact_id: int):
    """The file, a zip of a folder, or the metadata of a metadata-only artifact."""
    return storage.download_response(selectors.artifact_get(user=request.auth, artifact_id=artifact_id))


@router.get("/workers", response=list[dict])
def worker_list(request: HttpRequest):
    """Workers seen in the last day: queues, device, memory, utilisation, liveness."""
    out = []
    for item in selectors.worker_list():
        beat = item["beat"]
        out.append(
            {
                "name": beat.name,
                "alive": item["alive"],
                "queues": beat.queues,
                "device": beat.device,
                "device_name": beat.device_name,
                "memory_used": beat.memory_used,
                "memory_total": beat.memory_total,
                "utilization": beat.utilization,
                "last_seen": beat.last_seen.isoformat(),
                "running": len(item["nodes"]),
            }
        )
    return out
