"""The workers' Celery app. Start one with ``llmops worker -Q gpu`` (or ``celery -A
gpu_worker.celery_app worker -Q gpu``); it reads the same CELERY_* settings as the web.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[1]
for _p in (str(_root / "platform"), str(_root)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.config.settings")

import django  # noqa: E402
from celery import Celery  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# A worker serves no pages. DEBUG's query log would cost it on every query (on SQLite one
# extra QUOTE() statement each), slowing every node down for nothing.
settings.DEBUG = False

from llmops.config.celery import task_queues  # noqa: E402

app = Celery("llmops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = task_queues()
# Every task module, listed once here (the settings know nothing about the worker's code).
app.conf.imports = ("gpu_worker.tasks", "gpu_worker.knowledge_tasks", "gpu_worker.serve_tasks")

# The run engine's periodic reaper (also run by every worker's heartbeat thread); a missed
# beat is harmless, so a stale one expires instead of piling up behind busy workers.
app.conf.beat_schedule = {
    "llmops-reap-runs": {
        "task": "llmops.reap_runs",
        "schedule": settings.LLMOPS_REAPER_INTERVAL_S,
        "options": {"queue": "cpu", "expires": settings.LLMOPS_REAPER_INTERVAL_S},
    },
}

import gpu_worker.heartbeat  # noqa: E402, F401 - connects the worker signals
