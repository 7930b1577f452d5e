"""A worker killed mid-node does not lose the run.

Two ways to die: the whole worker (main process and child) gets SIGKILL -- the node's
heartbeat goes stale and a surviving worker's reaper re-queues it; or only the child that
runs the node dies (the OOM killer's way) -- Celery's main process re-queues the task
(acks_late + reject_on_worker_lost) and the redelivered task sees the claimant's process is
dead and takes the node over at once.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.gpu_worker.helpers import events, node_summary, wait_node, wait_run
from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SLOW = {"steps": 25, "sleep_s": 2.5, "tag": "slow"}


def _pipeline(make_pipeline):
    return make_pipeline(
        graph(
            [
                ("src", "test.source", {}),
                ("slow", "test.gpustep", SLOW),
                ("after", "test.step", {"tag": "after"}),
            ],
            [("src", "slow"), ("slow", "after")],
        )
    )


def test_sigkilled_worker_node_finishes_on_another_worker(shared_worker, engine_worker, make_pipeline, user):
    from llmops.runs.services import run_start

    workers = {
        w.name: w
        for w in (engine_worker("alpha", "gpu", concurrency=1), engine_worker("beta", "gpu", concurrency=1))
    }
    run = run_start(user=user, pipeline=_pipeline(make_pipeline))
    node = wait_node(run.pk, "slow", lambda n: n.status == "running" and (n.progress or 0) > 0)
    doomed = workers.pop(node.worker.split("@")[0])
    (survivor,) = workers.values()
    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)

    run = wait_run(run.pk, timeout=60)
    assert run.status == "succeeded", node_summary(run.pk)
    from llmops.runs.models import NodeRun

    slow = NodeRun.objects.get(run=run, node_id="slow")
    assert slow.attempt == 2 and slow.lost_count == 1
    assert slow.worker.startswith(survivor.name + "@")
    requeued = [e for e in events(run.pk) if e["node"] == "slow" and e["type"] == "queued"]
    assert any("stopped answering" in e["message"] for e in requeued)
    assert survivor.process.poll() is None


def test_killed_child_process_is_taken_over_at_once(shared_worker, engine_worker, make_pipeline, user):
    from llmops.runs.services import run_start

    # A long stale timeout: recovery here must come from the redelivered task, not the reaper.
    engine_worker("survivor", "gpu", concurrency=1, LLMOPS_STALE_AFTER_S="600")
    run = run_start(user=user, pipeline=_pipeline(make_pipeline))
    node = wait_node(run.pk, "slow", lambda n: n.status == "running" and (n.progress or 0) > 0)
    os.kill(node.pid, signal.SIGKILL)

    run = wait_run(run.pk, timeout=60)
    assert run.status == "succeeded", node_summary(run.pk)
    from llmops.runs.models import NodeRun

    slow = NodeRun.objects.get(run=run, node_id="slow")
    assert slow.attempt == 2 and slow.pid != node.pid
    assert any("died" in e.get("message", "") for e in events(run.pk) if e["type"] == "queued")
