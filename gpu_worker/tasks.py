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
