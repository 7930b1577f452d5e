"""Run pages: list, run detail, actions, Workers page."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def run(chain_pipeline, user):
    from llmops.runs.services import run_start

    return run_start(user=user, pipeline=chain_pipeline)


def test_runs_list(auth_client, run):
    page = auth_client.get("/runs/").content.decode()
    assert f"/runs/{run.pk}/" in page and "chain" in page
    assert 'hx-trigger="every 3s"' in page  # an active run keeps the list fresh
    partial = auth_client.get("/runs/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="run-list"') and "<html" not in partial
    assert f"/runs/{run.pk}/" not in auth_client.get("/runs/?status=succeeded").content.decode()


def test_run_page(auth_client, run):
    page = auth_client.get(f"/runs/{run.pk}/").content.decode()
    assert f'ws-connect="/ws/runs/{run.pk}/?after={run.last_seq}&amp;format=html"' in page
    assert 'id="node-src"' in page and 'id="node-a-progress"' in page and 'id="run-log"' in page
    assert "chart-4.6.1.umd.min.js" in page and "js/runs.js" in page
    assert 'id="btn-cancel"' in page


def test_cancel_and_retry_views(auth_client, run):
    res = auth_client.post(f"/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert res.status_code == 204
    run.refresh_from_db()
    assert run.status == "cancelled"
    page = auth_client.get(f"/runs/{run.pk}/").content.decode()
    assert "btn-cancel" not in page and "↻ Retry" in page
    res = auth_client.post(f"/runs/{run.pk}/nodes/src/retry/")
    assert res.status_code == 302 and res["Location"] == f"/runs/{run.pk}/"
    res = auth_client.post(f"/runs/{run.pk}/nodes/src/retry/", HTTP_HX_REQUEST="true")
    assert res.status_code == 409


def test_another_workspace_gets_404(client, other_user, run):
    client.force_login(other_user)
    assert client.get(f"/runs/{run.pk}/").status_code == 404
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 404
    assert f"/runs/{run.pk}/" not in client.get("/runs/").content.decode()


def test_workers_page(auth_client):
    from llmops.runs.services import worker_heartbeat

    worker_heartbeat(
        name="gpu0@box",
        host="box",
        pid=42,
        queues=["gpu"],
        concurrency=1,
        device="cuda:0",
        device_name="NVIDIA H200",
        memory_used=3 * 2**30,
        memory_total=141 * 2**30,
        utilization=87.0,
    )
    page = auth_client.get("/runs/workers/").content.decode()
    assert "gpu0@box" in page and "NVIDIA H200" in page and "87%" in page and "online" in page
    assert "No worker" in page and "llmops worker -Q cpu" in page  # nobody on cpu/serve
    partial = auth_client.get("/runs/workers/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="workers"')


def test_a_queue_without_worker_is_said_plainly(auth_client, run):
    from llmops.runs.models import NodeRun

    assert "No worker is listening on the cpu queue" in NodeRun.objects.get(run=run, node_id="src").message
    page = auth_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-no-worker"' in page and "llmops worker -Q cpu" in page
