"""Celery tasks. Each is an API: it takes ids, validates, calls one service, is safe to rerun."""

from __future__ import annotations

import os
import platform
import socket

from gpu_worker.celery_app import app


@app.task(name="llmops.ping", acks_late=False)
def ping() -> dict:
    """Answers which host and process took it; used by health checks and tests."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
    }


# acks_late + reject_on_worker_lost: a node whose process dies (SIGKILL, OOM) goes back to the
# queue; the conditional claim in execute() makes a second delivery of a live node a no-op.
@app.task(name="llmops.run_node", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_node(self, node_run_id: int) -> dict:
    from gpu_worker.engine import execute

    return execute(int(node_run_id), task_id=self.request.id or "", worker=self.request.hostname or "")


@app.task(name="llmops.reap_runs", acks_late=False, ignore_result=True)
def reap_runs() -> dict:
    """Periodic (beat): re-queue nodes of dead workers, close runs left open."""
    from llmops.runs.engine import reap

    return reap()
