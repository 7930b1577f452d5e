"""Reads for runs. Every run read is scoped with ``for_user``: another workspace's run is a 404."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import Http404
from django.utils import timezone

from llmops.runs.events import event_dict, iso
from llmops.runs.models import Artifact, NodeRun, NodeStatus, PipelineRun, RunEvent, WorkerHeartbeat

MAX_EVENTS_PAGE = 1000


def run_list(*, user, workspace=None, pipeline_id: int | None = None, status: str | None = None):
    qs = PipelineRun.objects.for_user(user).select_related("pipeline", "version", "created_by")
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    if pipeline_id is not None:
        qs = qs.filter(pipeline_id=pipeline_id)
    if status:
        qs = qs.filter(status=status)
    return qs.distinct().order_by("-created_at", "-id")


def run_get(*, user, run_id: int) -> PipelineRun:
    run = (
        PipelineRun.objects.for_user(user)
        .select_related("pipeline", "version", "created_by", "workspace")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run")
    return run


def node_runs(*, run: PipelineRun):
    return run.node_runs.order_by("position", "id")


def _ts(value) -> str | None:
    return iso(value) if value else None


def node_state(node: NodeRun) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "label": node.label,
        "status": node.status,
        "progress": node.progress,
        "message": node.message,
        "eta_s": node.eta_s,
        "started_at": _ts(node.started_at),
        "finished_at": _ts(node.finished_at),
        "error": node.error,
        "attempt": node.attempt,
        "worker": node.worker,
        "device": node.device,
        "queue": node.queue,
        "outputs": node.outputs,
        "cached_from_run": node.cached_from.run_id if node.cached_from else None,
    }


def run_state(run: PipelineRun) -> dict[str, Any]:
    """The run and each node's state, as GET /api/v1/runs/{id} answers (EVENTS.md)."""
    nodes = node_runs(run=run).select_related("cached_from")
    return {
        "id": run.pk,
        "status": run.status,
        "pipeline": run.pipeline_id,
        "pipeline_name": run.pipeline.name,
        "version": run.version.number,
        "force": run.force,
        "created_at": _ts(run.created_at),
        "started_at": _ts(run.started_at),
        "finished_at": _ts(run.finished_at),
        "error": run.error,
        "last_seq": run.last_seq,
        "url": f"/runs/{run.pk}/",
        "nodes": {node.node_id: node_state(node) for node in nodes},
    }


def run_summary(run: PipelineRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "pipeline": run.pipeline_id,
        "pipeline_name": run.pipeline.name,
        "version": run.version.number,
        "created_at": _ts(run.created_at),
        "started_at": _ts(run.started_at),
        "finished_at": _ts(run.finished_at),
        "url": f"/runs/{run.pk}/",
    }


def events_after(*, run_id: int, after: int = 0, limit: int = MAX_EVENTS_PAGE) -> list[dict[str, Any]]:
    qs = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:limit]
    return [event_dict(e) for e in qs]


def log_tail(*, run: PipelineRun, limit: int = 200) -> list[dict[str, Any]]:
    """The last log lines (and failures), oldest first."""
    qs = RunEvent.objects.filter(run=run, type__in=["log", "failed"]).order_by("-seq")[:limit]
    return [event_dict(e) for e in reversed(list(qs))]


def metric_points(*, run: PipelineRun, limit: int = 5000) -> list[dict[str, Any]]:
    """Every metric point of the run: {node, name, value, step} (progress metrics included)."""
    points: list[dict[str, Any]] = []
    qs = RunEvent.objects.filter(run=run, type__in=["metric", "progress"]).order_by("seq")
    for event in qs.only("node_id", "payload", "type")[:limit]:
        points += metric_points_of(event.node_id, event.payload)
    return points


def is_chartable(name: str) -> bool:
    """Progress bookkeeping (counters, totals, ETA) is shown on the progress bar, not charted."""
    return name not in ("step", "eta_s") and not name.endswith(("_done", "_total"))


def metric_points_of(node_id: str | None, payload: dict[str, Any]) -> list[dict[str, Any]]:
    metrics = dict(payload.get("metrics") or {})
    step = metrics.pop("step", None)
    return [
        {"node": node_id, "name": name, "value": value, "step": step}
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and is_chartable(name)
    ]


def run_artifacts(*, run: PipelineRun):
    ids = [i for node in run.node_runs.all() for i in node.outputs.values() if isinstance(i, int)]
    return (
        Artifact.objects.filter(pk__in=ids, workspace_id=run.workspace_id)
        .select_related("node_run")
        .order_by("node_run__position", "port", "pk")
    )


def artifact_get(*, user, artifact_id: int) -> Artifact:
    artifact = Artifact.objects.for_user(user).filter(pk=artifact_id).select_related("node_run").first()
    if artifact is None:
        raise Http404("No such artifact")
    return artifact


def artifact_dict(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.pk,
        "key": artifact.key,
        "type": artifact.type,
        "name": artifact.name,
        "is_dir": artifact.is_dir,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "metadata": artifact.metadata,
        "port": artifact.port,
        "node_run": artifact.node_run_id,
        "run": artifact.node_run.run_id if artifact.node_run else None,
        "node": artifact.node_run.node_id if artifact.node_run else None,
        "inputs": list(artifact.inputs.values_list("pk", flat=True)),
        "created_at": _ts(artifact.created_at),
        "download_url": f"/api/v1/artifacts/{artifact.pk}/download",
    }


# --- workers ------------------------------------------------------------------------------------


def worker_alive_cutoff():
    # Three missed beats: one late write is not a dead worker.
    return timezone.now() - timedelta(seconds=max(3 * settings.LLMOPS_HEARTBEAT_S, 15))


def worker_list() -> list[dict[str, Any]]:
    """Every worker seen in the last day, with liveness and the node each is running."""
    cutoff, now = worker_alive_cutoff(), timezone.now()
    # A worker that stopped cleanly is worth a glance for a few minutes; one that went silent
    # (killed, crashed, unplugged) stays listed for a day.
    recent = WorkerHeartbeat.objects.filter(last_seen__gte=now - timedelta(days=1)).exclude(
        stopped_at__lt=now - timedelta(minutes=10)
    )
    running = NodeRun.objects.filter(status=NodeStatus.RUNNING).select_related("run")
    by_worker: dict[str, list[NodeRun]] = {}
    for node in running:
        by_worker.setdefault(node.worker, []).append(node)
    out = []
    for beat in recent.order_by("name"):
        alive = beat.stopped_at is None and beat.last_seen >= cutoff
        out.append({"beat": beat, "alive": alive, "nodes": by_worker.get(beat.name, []) if alive else []})
    return out


def live_queues() -> set[str]:
    """Queues at least one live worker consumes (one small query on the heartbeat table)."""
    beats = WorkerHeartbeat.objects.filter(last_seen__gte=worker_alive_cutoff(), stopped_at__isnull=True)
    return {queue for queues in beats.values_list("queues", flat=True) for queue in queues}


def queue_coverage(workers: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Each known queue and the live workers consuming it (an empty list: nobody will run it)."""
    workers = worker_list() if workers is None else workers
    coverage: dict[str, list[str]] = {q: [] for q in settings.LLMOPS_QUEUES}
    for item in workers:
        if item["alive"]:
            for queue in item["beat"].queues:
                coverage.setdefault(queue, []).append(item["beat"].name)
    return coverage
