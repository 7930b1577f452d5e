"""The run engine end to end: a real worker on the real broker runs test node kinds.

One worker (concurrency 2) serves the whole module; every test waits for its run to settle.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.gpu_worker.helpers import events, node_summary, statuses, wait_node, wait_run
from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _start(pipeline, user, **kwargs):
    from llmops.runs.services import run_start

    return run_start(user=user, pipeline=pipeline, **kwargs)


def _seqs_are_contiguous(seen: list[dict]) -> bool:
    return [e["seq"] for e in seen] == list(range(1, len(seen) + 1))


def test_chain_completes_with_events_in_order(shared_worker, make_pipeline, user):
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {"text": "x"}),
                ("a", "test.step", {"tag": "a"}),
                ("b", "test.step", {"tag": "b"}),
            ],
            [("src", "a"), ("a", "b")],
        )
    )
    run = wait_run(_start(pipeline, user).pk)
    assert run.status == "succeeded", node_summary(run.pk)
    assert statuses(run.pk) == {"src": "succeeded", "a": "succeeded", "b": "succeeded"}
    seen = events(run.pk)
    assert _seqs_are_contiguous(seen)
    order = [(e["node"], e["type"]) for e in seen if e["type"] in ("started", "succeeded")]
    assert order == [
        ("src", "started"),
        ("src", "succeeded"),
        ("a", "started"),
        ("a", "succeeded"),
        ("b", "started"),
        ("b", "succeeded"),
    ]
    assert seen[-1]["type"] == "run" and seen[-1]["status"] == "succeeded"
    # The loss reached the stream (a node this quick is done before its first progress event
    # is due, so every loss point went out as a metric); metrics and logs were stored too.
    assert any(e["type"] in ("progress", "metric") and "loss" in (e.get("metrics") or {}) for e in seen)
    assert any(e["type"] == "metric" and "final_loss" in e["metrics"] for e in seen)
    assert any(e["type"] == "log" and e["node"] == "src" for e in seen)
    # The output went through the storage layer and reads back as what the nodes wrote.
    from llmops.runs.models import Artifact, NodeRun
    from llmops.runs.storage import materialise

    last = NodeRun.objects.get(run=run, node_id="b")
    artifact = Artifact.objects.get(pk=last.outputs["data"])
    assert materialise(artifact).read_text() == "x|a|b"
    assert artifact.path.startswith(f"artifacts/{artifact.key}/")
    assert artifact.inputs.count() == 1  # lineage: made from a's output


def test_diamond_runs_branches_in_parallel_and_joins_once(shared_worker, make_pipeline, user):
    slow = {"steps": 5, "sleep_s": 1.0}
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {}),
                ("left", "test.step", {**slow, "tag": "L"}),
                ("right", "test.step", {**slow, "tag": "R"}),
                ("join", "test.join", {}),
            ],
            [("src", "left"), ("src", "right"), ("left", "join:a"), ("right", "join:b")],
        )
    )
    run = wait_run(_start(pipeline, user).pk)
    assert run.status == "succeeded", node_summary(run.pk)
    from llmops.runs.models import NodeRun

    nodes = {n.node_id: n for n in NodeRun.objects.filter(run=run)}
    left, right, join = nodes["left"], nodes["right"], nodes["join"]
    # Both branches were running at the same time on the worker's two slots.
    assert left.started_at < right.finished_at and right.started_at < left.finished_at
    assert join.started_at >= max(left.finished_at, right.finished_at)
    seen = events(run.pk)
    assert _seqs_are_contiguous(seen)
    assert [e["type"] for e in seen if e["node"] == "join" and e["type"] == "started"] == ["started"]
    from llmops.runs.models import Artifact
    from llmops.runs.storage import materialise

    assert materialise(Artifact.objects.get(pk=join.outputs["data"])).read_text() == "(hello|L+hello|R)"


def test_failure_skips_downstream_and_fails_the_run(shared_worker, make_pipeline, user):
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {}),
                ("bad", "test.fail", {"message": "no GPU memory left"}),
                ("after", "test.step", {}),
                ("after2", "test.step", {}),
                ("other", "test.step", {"tag": "ok"}),
                ("crash", "test.crash", {}),
            ],
            [("src", "bad"), ("bad", "after"), ("after", "after2"), ("src", "other"), ("other", "crash")],
        )
    )
    run = wait_run(_start(pipeline, user).pk)
    assert run.status == "failed"
    assert statuses(run.pk) == {
        "src": "succeeded",
        "bad": "failed",
        "after": "skipped",
        "after2": "skipped",
        "other": "succeeded",
        "crash": "failed",
    }
    from llmops.runs.models import NodeRun

    assert NodeRun.objects.get(run=run, node_id="bad").error == "no GPU memory left"
    assert "ZeroDivisionError" in NodeRun.objects.get(run=run, node_id="crash").error
    assert "failed" in run.error
    seen = events(run.pk)
    skipped = [e for e in seen if e["type"] == "skipped"]
    assert {e["node"] for e in skipped} == {"after", "after2"}
    assert all("bad" in e["message"] or "Test failure" in e["message"] for e in skipped)


def test_retry_a_failed_node(shared_worker, make_pipeline, user, tmp_path):
    marker = tmp_path / "flaky-marker"
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {}),
                ("flaky", "test.flaky", {"marker": str(marker)}),
                ("after", "test.step", {}),
            ],
            [("src", "flaky"), ("flaky", "after")],
        )
    )
    run = wait_run(_start(pipeline, user).pk)
    assert run.status == "failed" and statuses(run.pk)["after"] == "skipped"
    from llmops.runs.services import node_retry

    node_retry(user=user, run=run, node_id="flaky")
    run = wait_run(run.pk)
    assert run.status == "succeeded", node_summary(run.pk)
    from llmops.runs.models import NodeRun

    assert NodeRun.objects.get(run=run, node_id="flaky").attempt == 2
    assert NodeRun.objects.get(run=run, node_id="src").attempt == 1  # not run again


def test_cancel_while_a_node_runs(shared_worker, make_pipeline, user, settings):
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {}),
                ("slow", "test.step", {"steps": 300, "sleep_s": 30}),
                ("after", "test.step", {}),
            ],
            [("src", "slow"), ("slow", "after")],
        )
    )
    run = _start(pipeline, user)
    wait_node(run.pk, "slow", lambda n: n.status == "running" and (n.progress or 0) > 0)
    from llmops.runs.services import run_cancel

    run_cancel(user=user, run=run)
    run = wait_run(run.pk, timeout=10)
    assert run.status == "cancelled"
    assert statuses(run.pk) == {"src": "succeeded", "slow": "cancelled", "after": "cancelled"}
    # The node itself stopped at its next ctx.cancelled() check (its workdir is cleaned up when
    # it returns), long before its 30 s of work.
    from llmops.runs.models import NodeRun

    node = NodeRun.objects.get(run=run, node_id="slow")
    workdir = Path(settings.LLMOPS_WORK_DIR) / f"run-{run.pk}" / f"slow-{node.attempt}"
    deadline = time.monotonic() + 10
    while workdir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not workdir.exists()
    types = [e["type"] for e in events(run.pk) if e["node"] == "slow"]
    assert types[-1] == "cancelled" and "progress" not in types[types.index("cancelled") :]


def test_cached_rerun_reuses_outputs_and_force_runs_again(shared_worker, make_pipeline, user):
    pipeline = make_pipeline(
        graph(
            [
                ("src", "test.source", {"text": "same"}),
                ("a", "test.step", {"tag": "a"}),
                ("b", "test.step", {"tag": "b"}),
            ],
            [("src", "a"), ("a", "b")],
        )
    )
    first = wait_run(_start(pipeline, user).pk)
    second = wait_run(_start(pipeline, user).pk)
    assert second.status == "succeeded"
    # The source always runs (its data may have changed); unchanged data -> a and b cached.
    assert statuses(second.pk) == {"src": "succeeded", "a": "cached", "b": "cached"}
    from llmops.runs.models import NodeRun

    a1, a2 = (NodeRun.objects.get(run=r, node_id="a") for r in (first, second))
    assert a2.cached_from_id == a1.pk and a2.outputs == a1.outputs and a2.attempt == 0
    assert [e["node"] for e in events(second.pk) if e["type"] == "cached"] == ["a", "b"]
    forced = wait_run(_start(pipeline, user, force=True).pk)
    assert statuses(forced.pk) == {"src": "succeeded", "a": "succeeded", "b": "succeeded"}


def test_changed_params_invalidate_only_downstream(shared_worker, make_pipeline, user):
    from llmops.builder.services import pipeline_save_version

    nodes = [
        ("src", "test.source", {"text": "t"}),
        ("a", "test.step", {"tag": "a"}),
        ("b", "test.step", {"tag": "b"}),
    ]
    pipeline = make_pipeline(graph(nodes, [("src", "a"), ("a", "b")]))
    wait_run(_start(pipeline, user).pk)
    nodes[2] = ("b", "test.step", {"tag": "B2"})
    pipeline_save_version(pipeline=pipeline, user=user, graph=graph(nodes, [("src", "a"), ("a", "b")]))
    run = wait_run(_start(pipeline, user).pk)
    assert statuses(run.pk) == {"src": "succeeded", "a": "cached", "b": "succeeded"}


def test_worker_heartbeat_is_recorded(shared_worker, transactional_db, user, client):
    from llmops.runs.selectors import queue_coverage, worker_list

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = [i for i in worker_list() if i["beat"].name.startswith("shared@")]
        if items and items[0]["alive"]:
            break
        time.sleep(0.2)
    beat = items[0]["beat"]
    assert beat.queues == ["cpu"] and beat.device == "cpu" and beat.pid > 0
    coverage = queue_coverage()
    assert beat.name in coverage["cpu"] and coverage["serve"] == []
    client.force_login(user)
    page = client.get("/runs/workers/").content.decode()
    assert beat.name in page and "No worker" in page and "llmops worker -Q serve" in page
