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
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, Q

from gpu_worker.context import WorkerContext
from gpu_worker.devices import device_info, release_memory
from gpu_worker.hooks import after_success
from llmops.runs import engine
from llmops.runs.models import Artifact, NodeRun, NodeStatus
from llmops.runs.storage import PreparedArtifact, artifact_prepare, artifact_record, materialise
from pipelines.cache import content_hash, content_output_key
from pipelines.context import ArtifactOut, ArtifactRef, NodeCancelled, NodeFailure
from pipelines.registry import find_spec
from pipelines.types import ArtifactType

log = logging.getLogger(__name__)


def execute(node_run_id: int, *, task_id: str, worker: str) -> dict[str, Any]:
    """The body of the ``llmops.run_node`` task. Never raises: outcomes are stored.

    After its node, the task may go on with a successor the scheduler claimed for it (see
    llmops.runs.engine.Continuation), one node at a time, like nodes that come through the queue.
    """
    info = device_info(check_torch=True)
    device_label = info.label if info.device != "cpu" else "cpu"
    if info.name:
        device_label = f"{device_label} ({info.name})"

    def claim(pk: int) -> NodeRun | None:
        return engine.node_claim(
            node_run_id=pk, worker=worker, pid=os.getpid(), device=device_label, task_id=task_id
        )

    node = claim(node_run_id)
    if node is None:
        lost = _recover_if_lost(node_run_id, task_id, worker)
        node = claim(lost) if lost is not None else None
    if node is None:
        state = NodeRun.objects.filter(pk=node_run_id).values_list("status", flat=True).first()
        return {"node_run": node_run_id, "claimed": False, "status": state}
    local = None
    if settings.LLMOPS_LOCAL_CONTINUATION:
        queue = node.queue  # a continuation stays on the queue this task came from
        local = engine.Continuation(
            queue=queue,
            worker=worker,
            pid=os.getpid(),
            device=device_label,
            task_id=task_id,
            queue_idle=lambda: queue_idle(queue),
        )
    ran = {}
    _just_stored.clear()
    while node is not None:
        try:
            ran[node.pk] = _run_claimed(node, device=info.device, local=local)
        finally:
            release_memory()
        node = local.take() if local is not None else None
    return {"node_run": node_run_id, "claimed": True, "status": ran[next(iter(ran))], "ran": ran}


_broker: tuple[int, Any] | None = None  # (pid, kombu connection) for queue_idle
_idle_seen: dict[str, float] = {}  # queue -> when it was last seen empty
IDLE_RECHECK_S = 0.5


def queue_idle(queue: str) -> bool:
    """No message waits on ``queue`` in the broker (a worker may then keep a chain to itself).

    An empty queue is believed empty for IDLE_RECHECK_S, so a chain of quick nodes does not ask
    the broker at every node: a task that arrives meanwhile waits at most that long (plus the
    node in progress) before this worker hands the chain back to the queue. An unreachable
    broker counts as busy: the successor then goes through the queue, with its usual retry."""
    global _broker
    from kombu.exceptions import ChannelError

    from gpu_worker.celery_app import app

    now = time.monotonic()
    if now - _idle_seen.get(queue, float("-inf")) < IDLE_RECHECK_S:
        return True
    try:
        if _broker is None or _broker[0] != os.getpid():
            _broker = (os.getpid(), app.connection_for_read())
        channel = _broker[1].default_channel
        if hasattr(channel, "_size"):  # kombu's Redis channel: one pipelined LLEN per priority
            idle = channel._size(queue) == 0
        else:
            try:
                idle = channel.queue_declare(queue=queue, passive=True).message_count == 0
            except ChannelError:
                idle = True  # a queue never declared holds nothing
    except Exception:  # noqa: BLE001 - any broker trouble: do the safe thing
        log.warning("could not look at queue %s", queue, exc_info=True)
        if _broker is not None:
            _broker[1].release()
            _broker = None
        return False
    if idle:
        _idle_seen[queue] = now
    else:
        _idle_seen.pop(queue, None)
    return idle


def _recover_if_lost(node_run_id: int, task_id: str, worker: str) -> int | None:
    """A redelivered task finds its node "running": was that run lost with a dead process on
    this very host (the master re-queued the task after its child was killed)? Then take it
    back now instead of waiting for the reaper's heartbeat timeout. The node lost may be a
    successor the task had gone on with: it carries the task's id. Returns the node to claim."""
    run_id = engine.run_id_of(node_run_id)
    if run_id is None:
        return None
    mine = Q(pk=node_run_id) | Q(task_id=task_id) if task_id else Q(pk=node_run_id)
    rows = NodeRun.objects.filter(mine, run_id=run_id, status=NodeStatus.RUNNING).values(
        "pk", "worker", "pid"
    )
    for row in rows:
        if row["worker"] != worker or not row["pid"] or _pid_alive(row["pid"]):
            continue
        outcome = engine.requeue_lost(
            node_run_id=row["pk"],
            reason=f"Worker process {row['pid']} on {worker} died",
            condition=Q(worker=worker, pid=row["pid"]),
            send=False,
        )
        if outcome == "requeued":
            return row["pk"]
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_claimed(node: NodeRun, *, device: str, local: engine.Continuation | None = None) -> str:
    # One folder per node, kept across attempts: a node retried after its worker died finds what
    # the lost attempt left there (train.lora resumes from its last checkpoint). It is removed
    # once the node has finished one way or the other.
    workdir = Path(settings.LLMOPS_WORK_DIR) / f"run-{node.run_id}" / node.node_id
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = WorkerContext(node=node, workdir=workdir, device=device)
    beat = NodeHeartbeat.of_this_process()
    beat.watch(node, ctx)
    try:
        return _call(node, ctx, local)
    finally:
        beat.unwatch()
        _discard(workdir)


_janitor: ThreadPoolExecutor | None = None


def _discard(folder: Path) -> None:
    """Remove a finished node's folder without making the next node wait: renamed aside at
    once (a retry of the node starts from an empty folder), deleted by a background thread
    (a fine-tuning node's checkpoints can take seconds to delete)."""
    global _janitor
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex}")
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    if _janitor is None:
        _janitor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workdir-janitor")
    _janitor.submit(shutil.rmtree, trash, ignore_errors=True)


def _call(node: NodeRun, ctx: WorkerContext, local: engine.Continuation | None = None) -> str:
    try:
        spec = find_spec(node.kind)
        if spec is None:
            raise NodeFailure(f"Unknown node kind {node.kind!r} on worker {node.worker}.")
        params = spec.params.model_validate(node.params)
        inputs, input_ids = _inputs(node, spec)
        implementation = spec.load_implementation()
        outputs = implementation(ctx, inputs, params) or {}
        prepared = _prepare_outputs(node, spec, outputs, input_ids, ctx.workdir)
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
    ctx.drop_pending_progress()  # the succeeded event says 100%
    try:
        with transaction.atomic():  # the output rows and the node's success: one transaction
            ids = _record_outputs(node, prepared)
            succeeded = engine.node_succeed(node=node, outputs=ids, local=local)
    except Exception as exc:  # noqa: BLE001 - e.g. a database error: that node fails, not the worker
        log.exception("node %s of run %s could not be recorded", node.node_id, node.run_id)
        _just_stored.clear()  # the rows and any successor's claim were rolled back
        if local is not None:
            local.node = None
        engine.node_fail(node=node, error=f"Could not record the outputs: {type(exc).__name__}: {exc}"[:2000])
        return NodeStatus.FAILED
    if succeeded:
        after_success(node=node, output_ids=ids)
    return NodeStatus.SUCCEEDED


# The outputs of the node this task ran last, by id: a successor it goes on with reads them
# from here instead of the database (they were written a moment ago, by this process).
_just_stored: dict[int, Artifact] = {}


def _inputs(node: NodeRun, spec) -> tuple[dict[str, Any], list[int]]:
    """Each input port's artifacts (the scheduler recorded which), materialised on local disk;
    a list for a port that takes several edges."""
    wanted = [i for ids in node.inputs.values() for i in ids]
    artifacts = {i: _just_stored[i] for i in wanted if i in _just_stored}
    missing = [i for i in wanted if i and i not in artifacts]
    if missing:
        found = Artifact.objects.filter(pk__in=missing).annotate(producer=F("node_run__node_id"))
        artifacts.update((a.pk, a) for a in found.order_by())
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
                    metadata={"node": artifact.producer, **(artifact.metadata or {})},
                    key=artifact.key,
                    id=artifact.pk,
                )
            )
        declared = spec.input(port)
        inputs[port] = refs if declared is not None and declared.multiple else refs[0]
    return inputs, [i for i in wanted if i]


def _prepare_outputs(
    node: NodeRun, spec, outputs: dict, input_ids: list[int], workdir: Path
) -> dict[str, PreparedArtifact]:
    """Check what the node returned and store its files (rows come with the success)."""
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
    prepared: dict[str, PreparedArtifact] = {}
    for port, out in outputs.items():
        if not isinstance(out, ArtifactOut):
            raise NodeFailure(f"Output {port!r} is a {type(out).__name__}, not an ArtifactOut.")
        prepared[port] = _prepare_one(node, spec, port, out, input_ids, workdir)
    return prepared


def _record_outputs(node: NodeRun, prepared: dict[str, PreparedArtifact]) -> dict[str, int]:
    stored = {port: artifact_record(item) for port, item in prepared.items()}
    _just_stored.clear()
    for artifact in stored.values():
        artifact.producer = node.node_id
        _just_stored[artifact.pk] = artifact
    return {port: a.pk for port, a in stored.items()}


def _prepare_one(
    node: NodeRun, spec, port: str, out: ArtifactOut, input_ids: list[int], workdir: Path
) -> PreparedArtifact:
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
    return artifact_prepare(
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
    """Beside the running node: heartbeat, delayed progress, cancel detection, last-resort kill.

    One thread per worker process (started in the process that runs nodes, after Celery's
    fork), watching whichever node runs; ``unwatch()`` returns only once no tick for that node
    is under way, so nothing is ever done for a node that has finished.
    """

    _instance: NodeHeartbeat | None = None

    @classmethod
    def of_this_process(cls) -> NodeHeartbeat:
        if cls._instance is None or cls._instance.pid != os.getpid():
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        self.pid = os.getpid()
        self.node: NodeRun | None = None
        self.ctx: WorkerContext | None = None
        self._lock = threading.Lock()  # held by a tick and by watch/unwatch
        self._waited = 0.0
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)
        self._thread.start()

    def watch(self, node: NodeRun, ctx: WorkerContext) -> None:
        with self._lock:
            self.node, self.ctx, self._waited = node, ctx, 0.0

    def unwatch(self) -> None:
        with self._lock:
            self.node = self.ctx = None

    def _loop(self) -> None:
        every = float(settings.LLMOPS_HEARTBEAT_S)
        tick = min(every, max(float(settings.LLMOPS_PROGRESS_INTERVAL_S), 0.1), 1.0)
        while True:
            time.sleep(tick)
            with self._lock:
                if self.node is None:
                    continue
                self._waited += tick
                beat = self._waited >= every
                if beat:
                    self._waited = 0.0
                self._tick(self.node, self.ctx, beat=beat)

    def _tick(self, node: NodeRun, ctx: WorkerContext, *, beat: bool) -> None:
        try:
            ctx.flush_progress()
            if beat and not engine.node_heartbeat(node=node):
                ctx.mark_cancelled()
        except Exception:  # noqa: BLE001 - a database hiccup must not kill the heartbeat
            log.warning("heartbeat of node run %s failed", node.pk, exc_info=True)
            close_old_connections()
        if ctx.cancelled_for_s > settings.LLMOPS_CANCEL_GRACE_S:
            # The node ignores ctx.cancelled(): end this worker process so the device is freed.
            # Celery's master replaces it; the redelivered task finds the node cancelled.
            log.error(
                "node run %s ignored its cancel for %.0fs; killing process %s",
                node.pk,
                ctx.cancelled_for_s,
                os.getpid(),
            )
            os.kill(os.getpid(), signal.SIGKILL)
