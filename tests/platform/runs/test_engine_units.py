"""The engine's state machine, driven directly (no worker): claims, the reaper, cancel, retry,
sequence numbers under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def run(chain_pipeline, user):
    from llmops.runs.services import run_start

    return run_start(user=user, pipeline=chain_pipeline)


def _node(run, node_id):
    from llmops.runs.models import NodeRun

    return NodeRun.objects.get(run=run, node_id=node_id)


def _claim(node, worker="w@test", pid=1):
    from llmops.runs.engine import node_claim

    return node_claim(node_run_id=node.pk, worker=worker, pid=pid, device="cpu", task_id="t")


def test_start_releases_only_ready_nodes(run):
    src, a = _node(run, "src"), _node(run, "a")
    assert run.status == "queued" and src.enqueued_at is not None and a.enqueued_at is None
    assert src.task_id and a.message == "Waiting for upstream nodes"


def test_a_node_is_claimed_once(run):
    src = _node(run, "src")
    first = _claim(src)
    assert first is not None and first.attempt == 1 and first.status == "running"
    assert _claim(src, worker="other@test") is None  # a redelivered task finds it taken
    assert _claim(_node(run, "a")) is None  # not released: its input is not ready
    run.refresh_from_db()
    assert run.status == "running"


def test_reaper_requeues_a_silent_node_then_gives_up(run, settings):
    from llmops.runs.engine import reap

    settings.LLMOPS_NODE_MAX_ATTEMPTS = 2
    old = timezone.now() - timedelta(seconds=settings.LLMOPS_STALE_AFTER_S + 5)
    src = _claim(_node(run, "src"))
    type(src).objects.filter(pk=src.pk).update(heartbeat_at=old)
    assert reap()["requeued"] == 1
    src = _node(run, "src")
    assert (src.status, src.lost_count, src.worker) == ("queued", 1, "")
    assert "stopped answering" in src.message

    src = _claim(src)
    assert src.attempt == 2
    type(src).objects.filter(pk=src.pk).update(heartbeat_at=old)
    assert reap()["failed"] == 1
    run.refresh_from_db()
    assert run.status == "failed" and _node(run, "a").status == "skipped"
    assert "gave up after 2 lost attempts" in _node(run, "src").error


def test_a_healthy_node_is_left_alone(run):
    from llmops.runs.engine import reap

    _claim(_node(run, "src"))
    assert reap() == {"requeued": 0, "failed": 0, "finished": 0}


def test_cancel_stops_queued_and_running_nodes_and_discards_late_results(run, user):
    from llmops.runs.engine import node_still_mine, node_succeed
    from llmops.runs.services import run_cancel

    src = _claim(_node(run, "src"))
    run = run_cancel(user=user, run=run)
    assert run.status == "cancelled" and run.cancel_requested_at is not None
    assert _node(run, "src").status == "cancelled" and _node(run, "a").status == "cancelled"
    assert not node_still_mine(node=src)  # what ctx.cancelled() asks
    assert node_succeed(node=src, outputs={}) is False
    assert _node(run, "src").status == "cancelled"


def test_retry_refuses_a_node_that_did_not_fail(run, user):
    from llmops.runs.services import RunError, node_retry

    with pytest.raises(RunError) as err:
        node_retry(user=user, run=run, node_id="src")
    assert err.value.status == 409
    with pytest.raises(RunError) as err:
        node_retry(user=user, run=run, node_id="nope")
    assert err.value.status == 404


def test_retry_reopens_a_failed_run(run, user):
    from llmops.runs.engine import node_fail
    from llmops.runs.services import node_retry

    src = _claim(_node(run, "src"))
    node_fail(node=src, error="disk full")
    run.refresh_from_db()
    assert run.status == "failed" and "disk full" in run.error
    run = node_retry(user=user, run=run, node_id="src")
    assert run.status == "running" and run.finished_at is None
    src, a = _node(run, "src"), _node(run, "a")
    assert (src.status, src.error, a.status) == ("queued", "", "queued")
    assert src.enqueued_at is not None and a.enqueued_at is None


def test_viewers_cannot_run(chain_pipeline, other_user):
    from llmops.accounts.services import membership_set
    from llmops.runs.services import RunError, run_start

    membership_set(workspace=chain_pipeline.workspace, user=other_user, role="viewer")
    with pytest.raises(RunError) as err:
        run_start(user=other_user, pipeline=chain_pipeline)
    assert err.value.status == 403


def test_an_invalid_graph_is_refused_with_its_errors(user):
    from llmops.builder.services import pipeline_create
    from llmops.runs.services import RunError, run_start
    from tests.gpu_worker.testkinds import graph

    pipeline = pipeline_create(
        workspace=user.workspaces.first(), user=user, name="bad", graph=graph([("j", "test.join", {})], [])
    )
    with pytest.raises(RunError) as err:
        run_start(user=user, pipeline=pipeline)
    assert err.value.status == 422 and err.value.errors
    assert all(e.get("node") == "j" for e in err.value.errors)


def test_sequence_numbers_have_no_gap_under_concurrent_writers(run):
    from django.db import connection

    from llmops.runs.events import emit
    from llmops.runs.models import RunEvent

    start = RunEvent.objects.filter(run=run).count()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                emit(run_id=run.pk, type="log", node_id="src", message=f"{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, start + 61))
    run.refresh_from_db()
    assert run.last_seq == start + 60


def test_a_lost_broker_does_not_strand_a_node(chain_pipeline, user, monkeypatch):
    from llmops.runs import engine
    from llmops.runs.services import run_start

    class DownBroker:
        def send_task(self, *args, **kwargs):
            raise ConnectionError("broker down")

    monkeypatch.setattr(engine, "celery_client", lambda: DownBroker())
    run = run_start(user=user, pipeline=chain_pipeline)
    src = _node(run, "src")
    assert src.enqueued_at is None and "broker" in src.message
    monkeypatch.undo()
    engine.reap()  # the reaper's pass releases it again, and this time it is sent
    assert _node(run, "src").enqueued_at is not None


def test_many_events_in_one_call_keep_contiguous_numbers(run):
    from llmops.runs.events import emit_many
    from llmops.runs.models import RunEvent

    before = RunEvent.objects.filter(run=run).count()
    stored = emit_many(
        run_id=run.pk, events=[{"type": "log", "node": "a", "message": f"line {i}"} for i in range(1201)]
    )
    assert [e["seq"] for e in stored] == list(range(before + 1, before + 1202))
    rows = list(
        RunEvent.objects.filter(run=run, seq__gt=before).order_by("seq").values_list("seq", "payload")
    )
    assert len(rows) == 1201 and rows[-1] == (before + 1201, {"message": "line 1200"})


def test_batched_events_are_stored_together_in_order_or_not_at_all(run):
    from django.db import transaction

    from llmops.runs.events import batched, emit
    from llmops.runs.models import RunEvent

    before = RunEvent.objects.filter(run=run).count()
    with transaction.atomic(), batched():
        emit(run_id=run.pk, type="log", node_id="a", message="first")
        with batched():  # nested: the outer block stores
            emit(run_id=run.pk, type="log", node_id="a", message="second")
        assert RunEvent.objects.filter(run=run).count() == before  # nothing stored yet
    rows = list(
        RunEvent.objects.filter(run=run, seq__gt=before).order_by("seq").values_list("seq", "payload")
    )
    assert rows == [(before + 1, {"message": "first"}), (before + 2, {"message": "second"})]

    with pytest.raises(RuntimeError), transaction.atomic(), batched():
        emit(run_id=run.pk, type="log", node_id="a", message="lost")
        raise RuntimeError("the transaction fails")
    assert RunEvent.objects.filter(run=run).count() == before + 2
    emit(run_id=run.pk, type="log", node_id="a", message="after")  # not batched any more
    assert RunEvent.objects.filter(run=run).count() == before + 3
