"""Worker parts without a worker process: the context's throttle, resources, devices, beat."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def claimed(make_pipeline, user, tmp_path, settings):
    """A node claimed by "this process", and a WorkerContext for it."""
    from gpu_worker.context import WorkerContext
    from llmops.runs.engine import node_claim
    from llmops.runs.models import NodeRun
    from llmops.runs.services import run_start
    from tests.gpu_worker.testkinds import graph

    settings.LLMOPS_PROGRESS_INTERVAL_S = 0.25
    # On the gpu queue: the shared cpu worker of this folder must not take the node first.
    run = run_start(user=user, pipeline=make_pipeline(graph([("src", "test.gpustep", {})], [])))
    node = node_claim(node_run_id=NodeRun.objects.get(run=run).pk, worker="me@here", pid=1, device="cpu")
    return node, WorkerContext(node=node, workdir=tmp_path, device="cpu")


def _events(node, type_):
    from llmops.runs.models import RunEvent

    return list(RunEvent.objects.filter(run_id=node.run_id, node_id=node.node_id, type=type_).order_by("seq"))


def test_progress_is_throttled_but_metrics_logs_and_the_last_value_are_kept(claimed):
    node, ctx = claimed
    for step in range(1, 101):  # a hundred calls in well under a second
        ctx.progress(step, 200, f"batch {step}", loss=1.0 / step)
    ctx.log("halfway")
    ctx.metric("accuracy", 0.5, step=100)
    progress = _events(node, "progress")
    assert len(progress) <= 2  # the first is due one interval after the start
    assert len(progress) + len(_events(node, "metric")) - 1 == 100  # every loss point survives
    time.sleep(0.3)
    ctx.flush_progress()  # what the heartbeat thread does: the held-back value goes out
    last = _events(node, "progress")[-1].payload
    assert last["message"] == "batch 100" and last["progress"] == 0.5 and last["eta_s"] > 0
    assert _events(node, "log")[0].payload == {"level": "info", "message": "halfway"}
    assert ctx.cancelled() is False


def test_a_cancelled_node_sees_it(claimed, user):
    from llmops.runs.models import PipelineRun
    from llmops.runs.services import run_cancel
    from pipelines.context import NodeCancelled

    node, ctx = claimed
    run_cancel(user=user, run=PipelineRun.objects.get(pk=node.run_id))
    time.sleep(0.6)  # ctx.cancelled() asks the database at most every 0.5 s
    with pytest.raises(NodeCancelled):
        ctx.check_cancelled()
    ctx.progress(1, 2)  # refused: the node is no longer this worker's
    assert not _events(node, "progress")


def test_missing_resource_resolver_is_a_clear_failure(claimed):
    from gpu_worker.resources import RESOLVERS
    from pipelines.context import NodeFailure

    _, ctx = claimed
    with pytest.raises(NodeFailure, match="Unknown resource kind 'pizza'"):
        ctx.resource("pizza", 1)
    RESOLVERS["test-missing"] = "llmops.nowhere.resources:thing"
    try:
        with pytest.raises(NodeFailure, match="cannot provide test-missing resources yet"):
            ctx.resource("test-missing", 1)
    finally:
        del RESOLVERS["test-missing"]


def test_device_info_on_a_cpu_machine(monkeypatch):
    from gpu_worker.devices import device_info

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    info = device_info()
    assert (info.device, info.label) == ("cpu", "cpu") and info.name and info.memory_used is None


def test_beat_runs_the_reaper():
    from gpu_worker.celery_app import app
    from gpu_worker.tasks import reap_runs

    entry = app.conf.beat_schedule["llmops-reap-runs"]
    assert entry["task"] == "llmops.reap_runs" == reap_runs.name
    assert reap_runs() == {"requeued": 0, "failed": 0, "finished": 0}
