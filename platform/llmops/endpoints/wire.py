"""The web <-> serve worker wire: task name, queue, and the Redis keys a request's answer
travels through. Shared by llmops.endpoints (web) and gpu_worker.serve_tasks (workers).

The web sends ``llmops.serve.query`` (ids and the request, no secrets) on the ``serve``
queue, then BLPOPs ``reply_key(request_id)``. The worker RPUSHes JSON events there:
``accepted`` when it took the request, ``delta`` pieces when streaming, then ``done`` (the
answer) or ``error`` (status and message). The web SETs ``cancel_key(request_id)`` when its
client went away or it gave up; the worker checks it between tokens and stops.
"""

from __future__ import annotations

import json
from typing import Any

TASK_QUERY = "llmops.serve.query"
QUEUE = "serve"
PREFIX = "llmops:serve"
# Replies are read within seconds; a few minutes of TTL only guards against leaks.
REPLY_TTL_S = 300
CANCEL_TTL_S = 600


def reply_key(request_id: str) -> str:
    return f"{PREFIX}:reply:{request_id}"


def cancel_key(request_id: str) -> str:
    return f"{PREFIX}:cancel:{request_id}"


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def decode(raw: bytes | str) -> dict[str, Any]:
    return json.loads(raw)
