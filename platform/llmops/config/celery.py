"""The web's Celery client: it only sends tasks by name and asks workers about themselves.

The web never imports gpu_worker (import-linter enforces it); both read the same CELERY_*
settings, so a task name and a queue are all the web needs to enqueue work.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Exchange, Queue


def task_queues() -> list[Queue]:
    """One direct exchange per queue, named like it, for the web and the workers alike."""
    from django.conf import settings

    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in settings.LLMOPS_QUEUES]


@lru_cache(maxsize=1)
def celery_client() -> Celery:
    app = Celery("llmops-web")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.task_queues = task_queues()
    return app


def send_task(name: str, *, args: list | None = None, kwargs: dict | None = None, queue: str, **options):
    """Enqueue a task by name on a queue; ``options`` are Celery's (task_id, expires, countdown...)."""
    return celery_client().send_task(name, args=args or [], kwargs=kwargs or {}, queue=queue, **options)
