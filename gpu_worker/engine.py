"""Running one node on this worker: claim, materialise inputs, call the implementation with a
WorkerContext, store outputs, report. Every state change goes through llmops.runs.engine.

A node heartbeat thread runs beside the node: it refreshes the node's heartbeat (the reaper
re-queues nodes whose heartbeat went stale, i.e. whose worker died), sends progress the
throttle held back, and notices a cancel even when the node never calls ctx.cancelled().
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q

from gpu_worker.context import WorkerContext
from gpu_worker.devices import device_info, release_memory
from gpu_worker.hooks import after_success
from llmops.runs import engine
from llmops.runs.models import Artifact, NodeRun, NodeStatus
from llmops.runs.storage import materialise, store_artifact
from pipelines.cache import content_hash, content_output_key
from pipelines.context import ArtifactOut, ArtifactRef, NodeCancelled, NodeFailure
from pipelines.registry import find_spec
from pipelines.types import ArtifactType

log = logging.getLogger(__name__)


def execute(node_run_id: int, *, task_id: str, worker: str) -> dict[str, Any]:
    """The body of the ``llmops.run_node`` task. Never raises: outcomes are stored."""
    info = device_info(check_torch=True)
    device_label = info.label if info.device != "cpu" else "cpu"
    if info.name:
        device_label = f"{device_label} ({info.name})"
    node = engine.node_claim(
        node_run_id=node_run_id, worker=worker, pid=os.getpid(), device=device_label, task_id=task_id
    )
    if node is None and _recover_if_lost(node_run_id, worker):
        node = engine.node_claim(
            node_run_id=node_run_id, worker=worker, pid=os.getpid(), device=device_label, task_id=task_id
        )
    if node is None:
        state = NodeRun.objects.filter(pk=node_run_id).values_list("status", flat=True).first()
        return {"node_run": node_run_id, "claimed": False, "status": state}
    try:
        status = _run_claimed(node, device=info.device)
    finally:
        release_memory()
    return {"node_run": node_run_id, "claimed": True, "status": status}


def _recover_if_lost(node_run_id: int, worker: str) -> bool:
    """A redelivered task finds its node "running": was that run lost with a dead process on
    this very host (the master re-queued the task after its child was killed)? Then take it
    back now instead of waiting for the reaper's heartbeat timeout."""
    row = NodeRun.objects.filter(pk=node_run_id, status=NodeStatus.RUNNING).values("worker", "pid").first()
    if not row or row["worker"] != worker or not row["pid"] or _pid_alive(row["pid"]):
        return False
    outcome = engine.requeue_lost(
        node_run_id=node_run_id,
        reason=f"Worker process {row['pid']} on {worker} died",
        condition=Q(worker=worker, pid=row["pid"]),
        send=False,
    )
    return outcome == "requeued"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_claimed(node: NodeRun, *, device: str) -> str:
    # One folder per node, kept across attempts: a node retried after its worker died finds what
    # the lost attempt left there (train.lora resumes from its last checkpoint). It is removed
    # once the node has finished one way or the other.
    workdir = Path(settings.LLMOPS_WORK_DIR) / f"run-{node.run_id}" / node.node_id
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = WorkerContext(node=node, workdir=workdir, device=device)
    beat = NodeHeartbeat(node, ctx)
    beat.start()
    try:
        return _call(node, ctx)
    finally:
        beat.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _call(node: NodeRun, ctx: WorkerContext) -> str:
    try:
        spec = find_spec(node.kind)
        if spec is None:
            raise NodeFailure(f"Unknown node kind {node.kind!r} on worker {node.worker}.")
        params = spec.params.model_validate(node.params)
        inputs, input_ids = _inputs(node, spec)
        implementation = spec.load_implementation()
        outputs = implementation(ctx, inputs, params) or {}
        ids = _store_outputs(node, spec, outputs, input_ids, ctx.workdir)
    except NodeCancelled:
        engine.node_cancelled(node=node)
        return NodeStatus.CANCELLED
    except NodeFailure as exc:
        engine.node_fail(node=node, error=str(exc) or type(exc).__name__)
        return NodeStatus.FAILED
    except Exception as exc:  # noqa: BLE001 - any bug in a node fails that node, not the worker
        log.exception("node %s of run %s crashed", node.node_id, node.run_id)
        engine.node_note(node=node, type="log", level="error", message=traceback.format_exc()[-4000:])
        engine.node_fail(node=node, error=f"{type(exc).__name__}: {exc}"[:2000])
        return NodeStatus.FAILED
    if ctx.cancelled():
        engine.node_cancelled(node=node)
        return NodeStatus.CANCELLED
    if engine.node_succeed(node=node, outputs=ids):
        after_success(node=node, output_ids=ids)
    return NodeStatus.SUCCEEDED


def _inputs(node: NodeRun, spec) -> tuple[dict[str, Any], list[int]]:
    """Each input port's artifacts (the scheduler recorded which), materialised on local disk;
    a list for a port that takes several edges."""
    wanted = [i for ids in node.inputs.values() for i in ids]
    artifacts = Artifact.objects.in_bulk([i for i in wanted if i]) if wanted else {}
    made_by = {a.node_run_id for a in artifacts.values()}
    producers = dict(NodeRun.objects.filter(pk__in=made_by).values_list("pk", "node_id"))
    inputs: dict[str, Any] = {}
    for port, ids in node.inputs.items():
        refs = []
        for artifact_id in ids:
            artifact = artifacts.get(artifact_id)
            if artifact is None:
                raise NodeFailure(f"Input {port!r}: the upstream node's output is missing (was it deleted?).")
            refs.append(
                ArtifactRef(
                    type=ArtifactType(artifact.type),
                    path=materialise(artifact),
                    # The producing node's id lets a node tell its inputs apart (serve.rag keys
                    # adapter descriptions by the fine-tuning node that made each adapter).
                    metadata={"node": producers.get(artifact.node_run_id), **(artifact.metadata or {})},
                    key=artifact.key,
                    id=artifact.pk,
                )
            )
        declared = spec.input(port)
        inputs[port] = refs if declared is not None and declared.multiple else refs[0]
    return inputs, [i for i in wanted if i]


def _store_outputs(node: NodeRun, spec, outputs: dict, input_ids: list[int], workdir: Path) -> dict[str, int]:
    if not isinstance(outputs, dict):
        raise NodeFailure(
            f"The node returned {type(outputs).__name__}, not a dict of outputs (a bug in {node.kind})."
        )
    unknown = sorted(set(outputs) - {p.name for p in spec.outputs})
    if unknown:
        raise NodeFailure(f"The node returned unknown output(s) {', '.join(unknown)} (a bug in {node.kind}).")
    missing = [p.name for p in spec.outputs if p.required and p.name not in outputs]
    if missing:
        raise NodeFailure(f"The node did not produce {', '.join(missing)} (a bug in {node.kind}).")
    ids = {}
    for port, out in outputs.items():
        if not isinstance(out, ArtifactOut):
            raise NodeFailure(f"Output {port!r} is a {type(out).__name__}, not an ArtifactOut.")
        ids[port] = _store_one(node, spec, port, out, input_ids, workdir).pk
    return ids


def _store_one(
    node: NodeRun, spec, port: str, out: ArtifactOut, input_ids: list[int], workdir: Path
) -> Artifact:
    path = Path(out.path) if out.path is not None else None
    if path is not None and not path.exists():
        raise NodeFailure(f"Output {port!r}: {path} does not exist.")
    namespace = f"ws{node.run.workspace_id}"
    if spec.inputs:
        key = engine.artifact_key(node=node, port=port)
    else:  # a source: keyed by content, so downstream caching follows the data, not the params
        sha, _ = content_hash(path)
        key = content_output_key(namespace=namespace, port=port, content_sha256=sha, metadata=out.metadata)
    inside = path is not None and path.resolve().is_relative_to(workdir.resolve())
    return store_artifact(
        workspace_id=node.run.workspace_id,
        key=key,
        type=str(out.type),
        path=path,
        metadata=dict(out.metadata),
        node_run_id=node.pk,
        port=port,
        input_ids=input_ids,
        move=inside,
    )


class NodeHeartbeat:
    """Beside a running node: heartbeat, delayed progress, cancel detection, last-resort kill."""

    def __init__(self, node: NodeRun, ctx: WorkerContext):
        self.node, self.ctx = node, ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{node.pk}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        every = float(settings.LLMOPS_HEARTBEAT_S)
        tick = min(every, max(float(settings.LLMOPS_PROGRESS_INTERVAL_S), 0.1), 1.0)
        waited = 0.0
        try:
            while not self._stop.wait(tick):
                waited += tick
                self._tick(beat=waited >= every)
                if waited >= every:
                    waited = 0.0
        finally:
            connection.close()

    def _tick(self, *, beat: bool) -> None:
        try:
            self.ctx.flush_progress()
            if beat and not engine.node_heartbeat(node=self.node):
                self.ctx.mark_cancelled()
        except Exception:  # noqa: BLE001 - a database hiccup must not kill the heartbeat
            log.warning("heartbeat of node run %s failed", self.node.pk, exc_info=True)
            close_old_connections()
        if self.ctx.cancelled_for_s > settings.LLMOPS_CANCEL_GRACE_S:
            # The node ignores ctx.cancelled(): end this worker process so the device is freed.
            # Celery's master replaces it; the redelivered task finds the node cancelled.
            log.error(
                "node run %s ignored its cancel for %.0fs; killing process %s",
                self.node.pk,
                self.ctx.cancelled_for_s,
                os.getpid(),
            )
            os.kill(os.getpid(), signal.SIGKILL)
