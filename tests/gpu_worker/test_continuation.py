"""A worker that finishes a node goes on with a ready successor on the same queue itself
(llmops.runs.engine.Continuation): no broker round trip, but never ahead of a waiting task,
and a process that dies in a continued node loses nothing."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.gpu_worker.helpers import events, node_summary, wait_node, wait_run
from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SLOW = {"steps": 25, "sleep_s": 2.5, "tag": "slow"}


def _nodes(run_id: int) -> dict:
    from llmops.runs.models import NodeRun

    return {n.node_id: n for n in NodeRun.objects.filter(run_id=run_id)}


def test_a_chain_on_one_queue_stays_in_one_task(shared_worker, make_pipeline, user):
    from llmops.runs.services import run_start

    pipeline = make_pipeline(
        graph(
            [("src", "test.source", {}), ("a", "test.step", {"tag": "a"}), ("b", "test.step", {"tag": "b"})],
            [("src", "a"), ("a", "b")],
        )
    )
    run = wait_run(run_start(user=user, pipeline=pipeline).pk)
    assert run.status == "succeeded", node_summary(run.pk)
    nodes = _nodes(run.pk)
    # a and b ran in the task that ran src, in the same process, and were never re-queued:
    # their only "queued" events are the ones every node gets when the run starts.
    assert nodes["a"].task_id == nodes["b"].task_id == nodes["src"].task_id
    assert nodes["a"].pid == nodes["b"].pid == nodes["src"].pid
    queued = [e["node"] for e in events(run.pk) if e["type"] == "queued"]
    assert sorted(queued) == ["a", "b", "src", "src"]  # src: waiting, then sent to the queue


def test_switched_off_every_node_goes_through_the_queue(shared_worker, engine_worker, make_pipeline, user):
    from llmops.runs.services import run_start

    engine_worker("queued-only", "gpu", concurrency=1, LLMOPS_LOCAL_CONTINUATION="false")
    step = {"steps": 2, "sleep_s": 0.1}
    pipeline = make_pipeline(
        graph(
            [("g1", "test.gpustep", step), ("g2", "test.gpustep", step), ("g3", "test.gpustep", step)],
            [("g1", "g2"), ("g2", "g3")],
        )
    )
    run = wait_run(run_start(user=user, pipeline=pipeline).pk)
    assert run.status == "succeeded", node_summary(run.pk)
    nodes = _nodes(run.pk)
    assert len({nodes[n].task_id for n in ("g1", "g2", "g3")}) == 3
    assert any(
        e["type"] == "queued" and e["node"] == "g3" and "Waiting for a worker" in e["message"]
        for e in events(run.pk)
    )


def test_a_waiting_task_is_seen_and_emptiness_is_believed_briefly(shared_worker):
    from gpu_worker import engine
    from gpu_worker.celery_app import app

    queue = f"test-idle-{uuid.uuid4().hex[:8]}"
    engine._idle_seen.clear()
    app.send_task("llmops.ping", queue=queue)
    assert engine.queue_idle(queue) is False  # a message waits: the successor must queue behind it
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    assert engine.queue_idle(queue) is True
    app.send_task("llmops.ping", queue=queue)
    assert engine.queue_idle(queue) is True  # seen empty a moment ago: not asked again yet
    time.sleep(engine.IDLE_RECHECK_S + 0.1)
    assert engine.queue_idle(queue) is False
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def test_killed_child_in_a_continued_node_is_taken_over(shared_worker, engine_worker, make_pipeline, user):
    from llmops.runs.services import run_start

    # A long stale timeout: recovery must come from the redelivered task (the task of the node
    # the chain started with, whose id the continued node carries), not from the reaper.
    engine_worker("continuer", "gpu", concurrency=1, LLMOPS_STALE_AFTER_S="600")
    pipeline = make_pipeline(
        graph(
            [("first", "test.gpustep", {"steps": 1, "sleep_s": 0.05}), ("slow", "test.gpustep", SLOW)],
            [("first", "slow")],
        )
    )
    run = run_start(user=user, pipeline=pipeline)
    node = wait_node(run.pk, "slow", lambda n: n.status == "running" and (n.progress or 0) > 0)
    assert node.task_id == _nodes(run.pk)["first"].task_id  # continued, not queued
    os.kill(node.pid, signal.SIGKILL)

    run = wait_run(run.pk, timeout=60)
    assert run.status == "succeeded", node_summary(run.pk)
    slow = _nodes(run.pk)["slow"]
    assert slow.attempt == 2 and slow.pid != node.pid
    assert any("died" in e.get("message", "") for e in events(run.pk) if e["node"] == "slow")
