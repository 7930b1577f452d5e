"""Writes the web (pages, API, CLI) makes to runs: start, cancel, retry, worker heartbeats.

The engine's own moves (claims, progress, completion, the reaper) live in engine.py.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.config.celery import celery_client
from llmops.runs import engine
from llmops.runs.events import emit, emit_many, lock_run
from llmops.runs.models import NodeRun, NodeStatus, PipelineRun, RunStatus, WorkerHeartbeat
from pipelines.graph import Graph, downstream, topological_order
from pipelines.registry import find_spec


class RunError(Exception):
    """A refused request; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(
        self,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        status: int | None = None,
        warnings: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.message, self.errors, self.warnings = message, errors or [], warnings or []
        if status is not None:
            self.status = status


def _require_editor(*, user, workspace) -> None:
    if not user_can(user=user, workspace=workspace, role=Role.EDITOR):
        raise RunError("Viewers cannot run pipelines; ask a workspace owner for editor access.", status=403)


def _validate(graph_data: dict) -> Graph:
    from llmops.builder.services import graph_validate

    report = graph_validate(graph=graph_data)
    if not report.get("ok"):
        errors = report.get("errors") or []
        first = errors[0].get("message", "") if errors and isinstance(errors[0], dict) else ""
        raise RunError(
            f"The pipeline is not valid yet: {first}".rstrip(": "),
            errors=errors,
            status=422,
            warnings=report.get("warnings") or [],
        )
    graph = Graph.model_validate(graph_data)
    if not graph.nodes:
        raise RunError("The pipeline has no nodes to run.", status=422)
    return graph


def run_start(*, user, pipeline, force: bool = False) -> PipelineRun:
    """Snapshot the pipeline's latest version into a run and release its ready nodes."""
    _require_editor(user=user, workspace=pipeline.workspace)
    version = pipeline.versions.order_by("-number").first()
    if version is None:
        raise RunError("The pipeline has no saved version.", status=422)
    graph = _validate(version.graph)
    with transaction.atomic():
        run = PipelineRun.objects.create(
            workspace_id=pipeline.workspace_id,
            pipeline=pipeline,
            version=version,
            graph=version.graph,
            created_by=user,
            force=force,
        )
        _create_node_runs(run, graph)
        lock_run(run.pk)
        emit_many(
            run_id=run.pk,
            events=[
                {"type": "run", "status": RunStatus.QUEUED},
                *(
                    {"type": "queued", "node": node_id, "status": NodeStatus.QUEUED, "message": message}
                    for node_id, message in run.node_runs.order_by("position").values_list(
                        "node_id", "message"
                    )
                ),
            ],
        )
        engine.schedule(run.pk)
    run.refresh_from_db()
    return run


def _create_node_runs(run: PipelineRun, graph: Graph) -> None:
    rows = []
    for position, node_id in enumerate(topological_order(graph)):
        node = graph.node(node_id)
        spec = find_spec(node.kind)
        rows.append(
            NodeRun(
                run=run,
                node_id=node.id,
                kind=node.kind,
                position=position,
                params=node.params,
                label=node.label or (spec.label if spec else node.kind),
                queue=spec.queue if spec else "cpu",
                message=engine.WAITING_INPUTS if graph.edges_into(node.id) else "",
            )
        )
    NodeRun.objects.bulk_create(rows)


def run_cancel(*, user, run: PipelineRun) -> PipelineRun:
    """Stop every queued and running node. Running nodes see ``ctx.cancelled()`` at their next
    check; queued tasks are revoked so a worker drops them unseen."""
    _require_editor(user=user, workspace=run.workspace)
    with transaction.atomic():
        lock_run(run.pk)
        run.refresh_from_db()
        if not run.is_active:
            return run
        PipelineRun.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
        live = list(
            run.node_runs.filter(status__in=[NodeStatus.QUEUED, NodeStatus.RUNNING]).order_by("position")
        )
        for node in live:
            NodeRun.objects.filter(pk=node.pk, status=node.status).update(
                status=NodeStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled", eta_s=None
            )
            emit(
                run_id=run.pk,
                type="cancelled",
                node_id=node.node_id,
                status=NodeStatus.CANCELLED,
                message="Cancelled",
            )
        task_ids = [n.task_id for n in live if n.task_id]
        if task_ids:
            transaction.on_commit(lambda: _revoke(task_ids), robust=True)
        engine.schedule(run.pk)
    run.refresh_from_db()
    return run


def _revoke(task_ids: list[str]) -> None:
    # Without terminate: a running node stops cooperatively; a queued message is dropped.
    celery_client().control.revoke(task_ids)


RETRYABLE = (NodeStatus.FAILED, NodeStatus.CANCELLED)


def node_retry(*, user, run: PipelineRun, node_id: str) -> PipelineRun:
    """Run a failed or cancelled node again, with everything downstream of it that did not run."""
    _require_editor(user=user, workspace=run.workspace)
    with transaction.atomic():
        lock_run(run.pk)
        run.refresh_from_db()
        node = run.node_runs.filter(node_id=node_id).first()
        if node is None:
            raise RunError(f"The run has no node {node_id[:64]!r}.", status=404)
        if node.status not in RETRYABLE:
            raise RunError(
                f"Only a failed or cancelled node can be retried; {node_id} is {node.status}.", status=409
            )
        below = downstream(Graph.model_validate(run.graph), node_id)
        again = [
            node,
            *run.node_runs.filter(
                node_id__in=below, status__in=[NodeStatus.SKIPPED, NodeStatus.CANCELLED, NodeStatus.FAILED]
            ).order_by("position"),
        ]
        for item in again:
            NodeRun.objects.filter(pk=item.pk).update(
                status=NodeStatus.QUEUED,
                enqueued_at=None,
                error="",
                progress=None,
                eta_s=None,
                finished_at=None,
                lost_count=0,
                message=engine.WAITING_INPUTS if item is not node else "",
            )
            emit(
                run_id=run.pk,
                type="queued",
                node_id=item.node_id,
                status=NodeStatus.QUEUED,
                message="Queued again",
            )
        PipelineRun.objects.filter(pk=run.pk).update(
            status=RunStatus.RUNNING, finished_at=None, error="", cancel_requested_at=None
        )
        emit(run_id=run.pk, type="run", status=RunStatus.RUNNING, message=f"Retrying {node_id}")
        engine.schedule(run.pk)
    run.refresh_from_db()
    return run


def worker_heartbeat(
    *,
    name: str,
    host: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    device: str,
    device_name: str = "",
    memory_used: int | None = None,
    memory_total: int | None = None,
    utilization: float | None = None,
    started_at=None,
) -> WorkerHeartbeat:
    now = timezone.now()
    beat, _ = WorkerHeartbeat.objects.update_or_create(
        name=name,
        defaults={
            "host": host,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
            "device": device,
            "device_name": device_name[:200],
            "memory_used": memory_used,
            "memory_total": memory_total,
            "utilization": utilization,
            "last_seen": now,
            "stopped_at": None,
            "started_at": started_at or now,
        },
    )
    return beat


def worker_stopped(*, name: str) -> None:
    WorkerHeartbeat.objects.filter(name=name).update(stopped_at=timezone.now())
