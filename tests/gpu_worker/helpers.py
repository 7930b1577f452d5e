"""Helpers for engine tests (importable by tests; fixtures live in conftest.py)."""

from __future__ import annotations

import time

ENGINE_ENV = {
    "LLMOPS_EXTRA_NODE_MODULES": "tests.gpu_worker.testkinds",
    "LLMOPS_HEARTBEAT_S": "0.3",
    "LLMOPS_STALE_AFTER_S": "2",
    "LLMOPS_REAPER_INTERVAL_S": "0.5",
    "LLMOPS_PROGRESS_INTERVAL_S": "0.1",
    "LLMOPS_DEVICE": "cpu",
}


def engine_env(**extra: str) -> dict[str, str]:
    from tests.conftest import worker_env

    return worker_env(**{**ENGINE_ENV, **extra})


def wait_run(run_id: int, timeout: float = 60, statuses=("succeeded", "failed", "cancelled")):
    """Poll until the run reaches one of ``statuses``; returns the run."""
    from llmops.runs.models import PipelineRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = PipelineRun.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run.status}: {node_summary(run_id)}")


def wait_node(run_id: int, node_id: str, predicate, timeout: float = 30):
    from llmops.runs.models import NodeRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = NodeRun.objects.get(run_id=run_id, node_id=node_id)
        if predicate(node):
            return node
        time.sleep(0.05)
    raise AssertionError(f"node {node_id} of run {run_id} never matched: {node_summary(run_id)}")


def node_summary(run_id: int) -> dict:
    from llmops.runs.models import NodeRun

    return {
        n.node_id: (n.status, n.attempt, n.worker, n.error[:200])
        for n in NodeRun.objects.filter(run_id=run_id)
    }


def statuses(run_id: int) -> dict[str, str]:
    from llmops.runs.models import NodeRun

    return dict(NodeRun.objects.filter(run_id=run_id).values_list("node_id", "status"))


def events(run_id: int) -> list[dict]:
    from llmops.runs.selectors import events_after

    return events_after(run_id=run_id, after=0)
