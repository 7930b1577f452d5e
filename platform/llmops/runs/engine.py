"""The run engine's state machine: scheduling, claims, completion, the reaper.

Called by the web (start, cancel, retry) and by workers (claim, progress, finish), always
through these functions. Rules that keep it correct with many processes at once:

- every multi-step write takes the run's row lock first (``lock_run``), so the scheduler of
  one finishing node sees what a concurrently finishing sibling committed (a diamond's join
  is released exactly once) and lock order is always run row, then node rows;
- every status move is a conditional UPDATE (``status=..., attempt=...``) and does nothing
  when another process already moved it: a duplicate or late message is a no-op;
- tasks are sent with ``transaction.on_commit`` and carry only the node run's id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from llmops.config.celery import celery_client
from llmops.runs.events import batched, emit, lock_run
from llmops.runs.models import (
    NODE_DONE,
    NODE_TERMINAL,
    RUN_TERMINAL,
    Artifact,
    NodeRun,
    NodeStatus,
    PipelineRun,
    RunStatus,
)
from pipelines.cache import node_key, output_key
from pipelines.graph import Graph, downstream, topological_order
from pipelines.registry import find_spec

log = logging.getLogger(__name__)

TASK_RUN_NODE = "llmops.run_node"
WAITING_INPUTS = "Waiting for upstream nodes"


def _now():
    return timezone.now()


# --- scheduling ---------------------------------------------------------------------------------


_GRAPHS: dict[int, Graph] = {}
_GRAPHS_MAX = 512


def run_graph(run_id: int, data: dict | None = None) -> Graph:
    """The run's parsed graph. A run's graph never changes, so each process parses it once."""
    graph = _GRAPHS.get(run_id)
    if graph is None:
        if data is None:
            data = PipelineRun.objects.filter(pk=run_id).values_list("graph", flat=True).get()
        graph = Graph.model_validate(data)
        if len(_GRAPHS) >= _GRAPHS_MAX:
            _GRAPHS.clear()
        _GRAPHS[run_id] = graph
    return graph


@dataclass
class Continuation:
    """A worker that just finished a node offers to run one ready successor itself.

    Sending the successor through the broker costs a round trip through Redis and Celery's
    pool (~10 ms a node); a chain on one queue does not need it. The successor is claimed for
    this worker in the transaction that releases it (it never sits in the queue), and only
    when ``queue_idle()`` says nothing else is waiting on that queue, so other runs' nodes are
    never overtaken. The claim carries the task id of the Celery task that runs it: a
    redelivery of that task (its process died) finds the node and takes it over.
    """

    queue: str
    worker: str
    pid: int
    device: str
    task_id: str
    queue_idle: Callable[[], bool]
    node: NodeRun | None = None  # set when a successor was claimed for this worker

    def take(self) -> NodeRun | None:
        node, self.node = self.node, None
        return node


def schedule(run_id: int, *, after: str | None = None, local: Continuation | None = None) -> None:
    """Cache or enqueue every node whose inputs are ready, then finish the run if all is done.

    ``after`` (a node that just finished) limits the work to that node's successors, the only
    nodes its completion can make ready. ``local`` lets the finishing worker claim one of them
    (see Continuation). The caller holds the run lock inside a transaction.
    """
    run = _run_row(run_id)
    graph = run_graph(run_id)
    # A cached successor may make more nodes ready: then the whole run is looked at below.
    if after is not None and run.cancel_requested_at is None:
        released, cached = _release_successors(run, graph, after, local)
        if not cached:
            # A released successor is not terminal yet: the run cannot be finished.
            if not released and not run.node_runs.exclude(status__in=NODE_TERMINAL).exists():
                _maybe_finish(run, list(run.node_runs.values_list("status", flat=True)))
            return
    nodes = {n.node_id: n for n in run.node_runs.all()}
    if run.cancel_requested_at is None:
        order = topological_order(graph)
        progressed = True
        while progressed:  # a cached node can make its successors ready: loop to a fixpoint
            progressed = False
            for node_id in order:
                node = nodes[node_id]
                if node.status != NodeStatus.QUEUED or node.enqueued_at is not None:
                    continue
                if all(nodes[e.source_node].status in NODE_DONE for e in graph.edges_into(node_id)):
                    progressed |= _release(run, graph, node, nodes)
    _maybe_finish(run, [n.status for n in nodes.values()])


_RUN_FIELDS = ("id", "workspace_id", "pipeline_id", "status", "force", "cancel_requested_at", "started_at")


def _run_row(run_id: int) -> PipelineRun:
    """The run with only the fields the scheduler reads, the others deferred (loaded if read).
    A third of what ``defer("graph").get()`` costs, and the scheduler runs at every node's end."""
    row = PipelineRun.objects.filter(pk=run_id).values_list(*_RUN_FIELDS).get()
    return PipelineRun.from_db(connection.alias, _RUN_FIELDS, row)


def _release_successors(
    run: PipelineRun, graph: Graph, finished: str, local: Continuation | None = None
) -> tuple[bool, bool]:
    """Release the ready successors of ``finished``. Returns (one was released, one was
    cached): a cached one's own successors may now be ready too, so the caller then
    schedules the whole run."""
    successors = {e.target_node for e in graph.edges_from(finished)}
    if not successors:
        return False, False
    wanted = successors | {e.source_node for n in successors for e in graph.edges_into(n)}
    nodes = {n.node_id: n for n in run.node_runs.filter(node_id__in=wanted).order_by()}
    released = cached = False
    for node_id in topological_order(graph):
        node = nodes.get(node_id)
        if node_id not in successors or node.status != NodeStatus.QUEUED or node.enqueued_at is not None:
            continue
        if all(nodes[e.source_node].status in NODE_DONE for e in graph.edges_into(node_id)):
            released = True
            cached |= _release(run, graph, node, nodes, local)
    return released, cached


def _release(
    run: PipelineRun,
    graph: Graph,
    node: NodeRun,
    nodes: dict[str, NodeRun],
    local: Continuation | None = None,
) -> bool:
    """Mark a ready node cached (returns True: successors may now be ready), claim it for the
    finishing worker (``local``), or enqueue it."""
    spec = find_spec(node.kind)
    if spec is None:
        _fail(node, f"Unknown node kind {node.kind!r}: is the module that registers it installed?", nodes)
        return False
    try:
        params = spec.params.model_validate(node.params).model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - pydantic's message is what the user needs
        _fail(node, f"Invalid params: {exc}", nodes)
        return False
    key = ""
    node.inputs, input_keys = _input_artifacts(run, graph, node.node_id, nodes)
    if spec.inputs:  # sources always run: their data can change under the same params
        key = node_key(kind=node.kind, version=spec.version, params=params, inputs=input_keys)
        hit = None if run.force else _cache_hit(run, key)
        if hit is not None:
            _mark_cached(run, node, hit)
            return True
    if local is not None and local.node is None and node.queue == local.queue and local.queue_idle():
        _claim_locally(run, node, key, local)
        return False
    node.content_key, node.enqueued_at, node.task_id = key, _now(), uuid.uuid4().hex
    node.message = _waiting_message(node.queue)
    node.save(update_fields=["content_key", "inputs", "enqueued_at", "task_id", "message"])
    emit(run_id=run.pk, type="queued", node_id=node.node_id, status=NodeStatus.QUEUED, message=node.message)
    transaction.on_commit(lambda: _send(node.pk, node.queue, node.task_id))
    return False


def _claim_locally(run: PipelineRun, node: NodeRun, key: str, local: Continuation) -> None:
    """Release ``node`` straight to the finishing worker: the release and the claim in one
    conditional UPDATE (the caller holds the run lock)."""
    now = _now()
    fields = _claim_fields(
        worker=local.worker, pid=local.pid, device=local.device, task_id=local.task_id, now=now
    )
    claimed = NodeRun.objects.filter(pk=node.pk, status=NodeStatus.QUEUED, enqueued_at__isnull=True).update(
        content_key=key, inputs=node.inputs, enqueued_at=now, **fields
    )
    if not claimed:
        return
    # What the UPDATE wrote, without reading the row back (the run lock is held: no one else
    # moved it in between).
    attempt, task_id = node.attempt + 1, local.task_id or node.task_id
    for field, value in fields.items():
        setattr(node, field, value)
    node.attempt, node.task_id = attempt, task_id
    node.content_key, node.enqueued_at, node.run = key, now, run
    _emit_started(node)
    local.node = node


def _emit_started(node: NodeRun) -> None:
    emit(
        run_id=node.run_id,
        type="started",
        node_id=node.node_id,
        status=NodeStatus.RUNNING,
        attempt=node.attempt,
        worker=node.worker,
        device=node.device,
        message=node.message,
    )


def _claim_fields(*, worker: str, pid: int, device: str, task_id: str, now) -> dict[str, Any]:
    """What a claim writes: the node runs here now, one attempt more."""
    return {
        "status": NodeStatus.RUNNING,
        "attempt": F("attempt") + 1,
        "worker": worker,
        "pid": pid,
        "device": device,
        "task_id": task_id or F("task_id"),
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
        "progress": None,
        "eta_s": None,
        "error": "",
        "message": "Starting",
    }


_LIVE_QUEUES: tuple[float, set[str]] = (0.0, set())
_LIVE_QUEUES_TTL_S = 2.0


def _waiting_message(queue: str) -> str:
    """What a released node waits for; says so plainly when no worker serves its queue.
    The queues are looked up at most every two seconds per process (a message, not a decision)."""
    global _LIVE_QUEUES
    from llmops.runs.selectors import live_queues

    checked, queues = _LIVE_QUEUES
    if queue not in queues or time.monotonic() - checked > _LIVE_QUEUES_TTL_S:
        queues = live_queues()
        _LIVE_QUEUES = (time.monotonic(), queues)
    if queue in queues:
        return f"Waiting for a worker on the {queue} queue"
    return f"No worker is listening on the {queue} queue: start one (llmops worker -Q {queue})"


def _send(node_run_id: int, queue: str, task_id: str) -> None:
    """Enqueue a released node (after commit). If the broker cannot be reached, the node is
    un-released so that the reaper's next pass releases (and sends) it again."""
    try:
        celery_client().send_task(TASK_RUN_NODE, args=[node_run_id], queue=queue, task_id=task_id)
    except Exception:  # noqa: BLE001 - any broker error: the node must not wait forever
        log.warning(
            "could not enqueue node run %s on %s; the reaper will retry", node_run_id, queue, exc_info=True
        )
        NodeRun.objects.filter(pk=node_run_id, status=NodeStatus.QUEUED, task_id=task_id).update(
            enqueued_at=None, message="Could not reach the broker; retrying shortly"
        )


def _input_artifacts(
    run: PipelineRun, graph: Graph, node_id: str, nodes: dict[str, NodeRun]
) -> tuple[dict, dict]:
    """Each input port's artifact ids and content keys, in edge order (order matters for a
    port that takes several edges).

    A keyed producer's output key follows from its content key (``artifact_key``, the key it
    was stored under); only a source's outputs, keyed by their bytes, are looked up."""
    ids: dict[str, list] = {}
    derived: dict[int, str] = {}
    for edge in graph.edges_into(node_id):
        producer = nodes[edge.source_node]
        artifact_id = producer.outputs.get(edge.source_port)
        ids.setdefault(edge.target_port, []).append(artifact_id)
        if artifact_id and producer.content_key:
            derived[artifact_id] = output_key(
                namespace=f"ws{run.workspace_id}", node_key=producer.content_key, port=edge.source_port
            )
    wanted = [i for port_ids in ids.values() for i in port_ids if i and i not in derived]
    keys = dict(Artifact.objects.filter(pk__in=wanted).order_by().values_list("pk", "key")) if wanted else {}
    keys.update(derived)
    return ids, {port: [keys.get(i, "missing") for i in port_ids] for port, port_ids in ids.items()}


def _cache_hit(run: PipelineRun, key: str) -> NodeRun | None:
    from llmops.runs.storage import artifact_exists

    candidates = (
        NodeRun.objects.filter(
            run__workspace_id=run.workspace_id, content_key=key, status=NodeStatus.SUCCEEDED
        )
        .exclude(run_id=run.pk)
        .order_by("-finished_at")[:5]
    )
    for candidate in candidates:
        artifacts = Artifact.objects.filter(pk__in=list(candidate.outputs.values()))
        if len(artifacts) == len(candidate.outputs) and all(artifact_exists(a) for a in artifacts):
            return candidate
    return None


def _mark_cached(run: PipelineRun, node: NodeRun, hit: NodeRun) -> None:
    now = _now()
    node.status, node.cached_from, node.outputs = NodeStatus.CACHED, hit, hit.outputs
    node.content_key, node.progress, node.eta_s = hit.content_key, 1.0, 0.0
    node.enqueued_at = node.started_at = node.finished_at = now
    node.message = f"Reused the outputs of run {hit.run_id}"
    node.save()
    _mark_run_started(run)
    emit(
        run_id=node.run_id,
        type="cached",
        node_id=node.node_id,
        status=NodeStatus.CACHED,
        progress=1.0,
        message=node.message,
        cached_from_run=hit.run_id,
    )


def _mark_run_started(run: PipelineRun) -> None:
    if run.status != RunStatus.QUEUED:
        return
    run.status, run.started_at = RunStatus.RUNNING, _now()
    if PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=run.status, started_at=run.started_at
    ):
        emit(run_id=run.pk, type="run", status=RunStatus.RUNNING)


def _maybe_finish(run: PipelineRun, statuses: list[str]) -> None:
    if run.status in RUN_TERMINAL or any(s not in NODE_TERMINAL for s in statuses):
        return
    if run.cancel_requested_at is not None:
        status = RunStatus.CANCELLED
    elif all(s in NODE_DONE for s in statuses):
        status = RunStatus.SUCCEEDED
    else:
        status = RunStatus.FAILED
    error = "" if status != RunStatus.FAILED else _failure_summary(run)
    now = _now()
    PipelineRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=now, error=error, started_at=run.started_at or now
    )
    run.status = status
    emit(run_id=run.pk, type="run", status=status, message=error or None)


def _failure_summary(run: PipelineRun) -> str:
    failed = run.node_runs.filter(status__in=[NodeStatus.FAILED, NodeStatus.CANCELLED]).order_by("position")
    first = failed.first()
    if first is None:
        return "Some nodes did not run."
    return f"Node {first.label or first.node_id} {first.status}: {first.error}"[:1000]


def _fail(node: NodeRun, error: str, nodes: dict[str, NodeRun] | None = None) -> None:
    """Fail a node and skip everything downstream of it (caller holds the run lock).

    ``nodes``, when the caller holds the run's nodes in memory, is kept up to date.
    """
    NodeRun.objects.filter(pk=node.pk).update(
        status=NodeStatus.FAILED, error=error, finished_at=_now(), eta_s=None, message="Failed"
    )
    node.status, node.error = NodeStatus.FAILED, error
    emit(run_id=node.run_id, type="failed", node_id=node.node_id, status=NodeStatus.FAILED, message=error)
    _skip_downstream(node, reason=f"Skipped: {node.label or node.node_id} failed", nodes=nodes)


def _skip_downstream(node: NodeRun, *, reason: str, nodes: dict[str, NodeRun] | None = None) -> None:
    below = downstream(run_graph(node.run_id), node.node_id)
    victims = NodeRun.objects.filter(run_id=node.run_id, node_id__in=below, status=NodeStatus.QUEUED)
    for victim in victims.order_by("position"):
        NodeRun.objects.filter(pk=victim.pk).update(
            status=NodeStatus.SKIPPED, message=reason, finished_at=_now()
        )
        if nodes is not None and victim.node_id in nodes:
            nodes[victim.node_id].status = NodeStatus.SKIPPED
        emit(
            run_id=node.run_id,
            type="skipped",
            node_id=victim.node_id,
            status=NodeStatus.SKIPPED,
            message=reason,
        )


# --- worker side --------------------------------------------------------------------------------


def run_id_of(node_run_id: int) -> int | None:
    return NodeRun.objects.filter(pk=node_run_id).values_list("run_id", flat=True).first()


def lock_run_of_node(node_run_id: int) -> int | None:
    """Lock the run of a node run and return its id (None: no such node run). One query on
    PostgreSQL; on SQLite the transaction's BEGIN IMMEDIATE is the lock, so the id is not
    even needed yet and a claim costs no extra round trip."""
    if connection.vendor == "sqlite":
        return node_run_id
    runs = PipelineRun.objects.select_for_update(of=("self",)).filter(node_runs__pk=node_run_id)
    return runs.values_list("pk", flat=True).first()


def node_claim(*, node_run_id: int, worker: str, pid: int, device: str, task_id: str = "") -> NodeRun | None:
    """Take a released, queued node for this worker; None when it is not claimable (a
    duplicate delivery, a cancelled run, a node another worker already runs)."""
    with transaction.atomic():
        if lock_run_of_node(node_run_id) is None:
            return None
        claimed = NodeRun.objects.filter(
            pk=node_run_id, status=NodeStatus.QUEUED, enqueued_at__isnull=False
        ).update(**_claim_fields(worker=worker, pid=pid, device=device, task_id=task_id, now=_now()))
        if not claimed:
            return None
        node = NodeRun.objects.select_related("run").defer("run__graph").get(pk=node_run_id)
        _mark_run_started(node.run)
        _emit_started(node)
    return node


def _mine(node: NodeRun) -> Q:
    return Q(pk=node.pk, status=NodeStatus.RUNNING, attempt=node.attempt)


def node_heartbeat(*, node: NodeRun) -> bool:
    """Still ours? Refreshes the heartbeat; False when the node was cancelled or re-queued."""
    return bool(NodeRun.objects.filter(_mine(node)).update(heartbeat_at=_now()))


def node_still_mine(*, node: NodeRun) -> bool:
    return NodeRun.objects.filter(_mine(node)).exists()


def node_progress(
    *,
    node: NodeRun,
    progress: float | None,
    message: str,
    eta_s: float | None,
    metrics: dict[str, Any] | None = None,
) -> bool:
    with transaction.atomic():
        lock_run(node.run_id)
        updated = NodeRun.objects.filter(_mine(node)).update(
            progress=progress, message=message[:500], eta_s=eta_s, heartbeat_at=_now()
        )
        if updated:
            emit(
                run_id=node.run_id,
                type="progress",
                node_id=node.node_id,
                status=NodeStatus.RUNNING,
                progress=progress,
                message=message[:500],
                eta_s=eta_s,
                metrics=metrics or None,
            )
    return bool(updated)


def node_note(*, node: NodeRun, type: str, **payload: Any) -> None:  # noqa: A002
    """A log line or a metric point of a running node (never throttled)."""
    emit(run_id=node.run_id, type=type, node_id=node.node_id, **payload)


def node_succeed(
    *, node: NodeRun, outputs: dict[str, Any], message: str = "Done", local: Continuation | None = None
) -> bool:
    """Finish a node and release its successors; ``local.node`` is then the successor this
    worker claimed to run next, if any."""
    with transaction.atomic(), batched():
        lock_run(node.run_id)
        updated = NodeRun.objects.filter(_mine(node)).update(
            status=NodeStatus.SUCCEEDED,
            outputs=outputs,
            progress=1.0,
            eta_s=0.0,
            finished_at=_now(),
            message=message[:500],
        )
        if updated:
            emit(
                run_id=node.run_id,
                type="succeeded",
                node_id=node.node_id,
                status=NodeStatus.SUCCEEDED,
                progress=1.0,
                message=message[:500],
            )
            schedule(node.run_id, after=node.node_id, local=local)
    return bool(updated)


def node_fail(*, node: NodeRun, error: str) -> bool:
    with transaction.atomic():
        lock_run(node.run_id)
        if not NodeRun.objects.filter(_mine(node)).exists():
            return False
        _fail(node, error[:4000])
        schedule(node.run_id)
    return True


def node_cancelled(*, node: NodeRun) -> bool:
    """The node stopped because it saw ``ctx.cancelled()``; usually already marked cancelled."""
    with transaction.atomic():
        lock_run(node.run_id)
        updated = NodeRun.objects.filter(_mine(node)).update(
            status=NodeStatus.CANCELLED, finished_at=_now(), message="Cancelled", eta_s=None
        )
        if updated:
            emit(run_id=node.run_id, type="cancelled", node_id=node.node_id, status=NodeStatus.CANCELLED)
            _skip_downstream(node, reason="Skipped: an upstream node was cancelled")
            schedule(node.run_id)
    return bool(updated)


def artifact_key(*, node: NodeRun, port: str) -> str:
    return output_key(namespace=f"ws{node.run.workspace_id}", node_key=node.content_key, port=port)


# --- recovery -----------------------------------------------------------------------------------


def requeue_lost(*, node_run_id: int, reason: str, condition: Q | None = None, send: bool = True) -> str:
    """Put a node whose worker is gone back on its queue, or fail it after too many losses.

    ``condition`` narrows which state counts as lost (stale heartbeat, a dead pid), so a
    worker that is merely slow and already moved on is never disturbed. ``send=False`` when the
    caller claims the node itself right after. Returns what happened:
    "requeued", "failed" or "" (nothing to do).
    """
    run_id = run_id_of(node_run_id)
    if run_id is None:
        return ""
    with transaction.atomic():
        lock_run(run_id)
        node = NodeRun.objects.filter(
            Q(pk=node_run_id, status=NodeStatus.RUNNING) & (condition or Q())
        ).first()
        if node is None:
            return ""
        if node.lost_count + 1 >= settings.LLMOPS_NODE_MAX_ATTEMPTS:
            _fail(node, f"{reason}; gave up after {node.lost_count + 1} lost attempts")
            schedule(run_id)
            return "failed"
        message = f"{reason}; re-queued (attempt {node.attempt + 1})"
        node.status, node.lost_count, node.enqueued_at = NodeStatus.QUEUED, node.lost_count + 1, _now()
        node.task_id, node.message, node.worker, node.pid = uuid.uuid4().hex, message, "", None
        node.save(
            update_fields=["status", "lost_count", "enqueued_at", "task_id", "message", "worker", "pid"]
        )
        emit(run_id=run_id, type="queued", node_id=node.node_id, status=NodeStatus.QUEUED, message=message)
        if send:
            transaction.on_commit(lambda: _send(node.pk, node.queue, node.task_id))
    return "requeued"


def reap(*, now=None) -> dict[str, int]:
    """Recover nodes whose worker stopped heart-beating and finish runs left open."""
    now = now or _now()
    cutoff = now - timedelta(seconds=settings.LLMOPS_STALE_AFTER_S)
    counts = {"requeued": 0, "failed": 0, "finished": 0}
    stale = NodeRun.objects.filter(status=NodeStatus.RUNNING, heartbeat_at__lt=cutoff)
    for node in stale.only("pk", "worker")[:200]:
        outcome = requeue_lost(
            node_run_id=node.pk,
            reason=f"Worker {node.worker or '?'} stopped answering",
            condition=Q(heartbeat_at__lt=cutoff),
        )
        if outcome:
            counts[outcome] += 1
    for run_id in _active_runs():
        with transaction.atomic():
            lock_run(run_id)
            before = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
            schedule(run_id)
            after = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
            counts["finished"] += int(before != after)
    return counts


def _active_runs() -> Iterable[int]:
    """Runs not finished yet. Scheduling them again is a no-op for a healthy run, and settles
    one that a crash between two writes (or a lost broker connection) left behind: ready nodes
    that were never sent are released, and a run whose nodes are all done is finished."""
    active = PipelineRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    return list(active.order_by("pk").values_list("pk", flat=True)[:500])
