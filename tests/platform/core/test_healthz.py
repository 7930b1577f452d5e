"""/healthz against real parts: the embedded Valkey (or TEST_REDIS_URL) and real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.config.celery import send_task

ROOT = Path(__file__).resolve().parents[3]
QUEUES = ["cpu", "gpu", "serve"]


def healthz(client):
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return response, response.json()


@pytest.mark.services
def test_all_up_with_a_worker_on_every_queue_answering_ping(client, db, start_worker):
    worker = start_worker("cpu,gpu,serve", name="health-all")
    response, report = healthz(client)
    assert response.status_code == 200, report
    assert report["ok"] is True and report["down"] == []
    checks = report["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"] and checks["channel_layer"]["ok"]
    assert checks["workers"]["missing"] == []
    for queue in QUEUES:
        assert any(w.startswith(worker.name + "@") for w in checks["workers"]["queues"][queue]["workers"])
    # The worker really executes tasks sent by name from the web on each queue.
    for queue in QUEUES:
        answer = send_task("llmops.ping", queue=queue).get(timeout=60)
        assert answer["pid"] > 0 and answer["host"], answer


@pytest.mark.services
def test_no_worker_is_503_naming_every_queue(client, db):
    response, report = healthz(client)
    assert response.status_code == 503
    assert report["ok"] is False and report["down"] == ["workers"]
    workers = report["checks"]["workers"]
    assert workers["missing"] == QUEUES
    assert "cpu, gpu, serve" in workers["error"]
    # Everything else is up: the report says exactly what is wrong.
    assert report["checks"]["database"]["ok"] and report["checks"]["broker"]["ok"]


@pytest.mark.services
def test_names_only_the_queue_without_a_worker(client, db, start_worker):
    start_worker("cpu,serve", name="health-partial")
    response, report = healthz(client)
    assert response.status_code == 503
    workers = report["checks"]["workers"]
    assert workers["missing"] == ["gpu"]
    assert workers["queues"]["cpu"]["ok"] and workers["queues"]["serve"]["ok"]
    assert not workers["queues"]["gpu"]["ok"]


def test_unreachable_redis_is_reported_not_raised(tmp_path):
    """A dead broker: /healthz still answers, with broker, channel layer and workers down."""
    code = (
        "import json, django; django.setup(); "
        "from llmops.core.health import health_report; print(json.dumps(health_report()))"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "llmops.config.settings",
        "LLMOPS_VAR_DIR": str(tmp_path / "var"),
        "REDIS_URL": f"unix://{tmp_path / 'nobody-listens.sock'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False
    assert set(report["down"]) == {"broker", "channel_layer", "workers"}
    assert report["checks"]["database"]["ok"] is True
    assert report["checks"]["workers"]["missing"] == QUEUES
    assert "nobody-listens.sock" in report["checks"]["broker"]["error"]
