"""Container health checks, light enough to run every 30 s (no Django, no torch).

    python deploy/healthcheck.py web      the web answers HTTP (200, or 503 with a report)
    python deploy/healthcheck.py worker   a Celery worker of this container answers a ping

The web check accepts 503: /healthz is 503 whenever any queue lacks a worker, and a missing
GPU worker must not make the web container restart. The report says what is down.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request


def web() -> bool:
    hosts = [h.strip().lstrip(".") for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")]
    host = next((h for h in hosts if h and h != "*"), "localhost")
    request = urllib.request.Request(  # noqa: S310 - a fixed loopback URL
        f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz",
        # Behind the TLS proxy: without this the web answers a redirect to https.
        headers={"Host": host, "X-Forwarded-Proto": "https"},
    )
    try:
        with urllib.request.urlopen(request, timeout=8) as response:  # noqa: S310
            return response.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code == 503
    except OSError:
        return False


def worker() -> bool:
    from celery import Celery

    app = Celery("healthcheck", broker=os.environ["REDIS_URL"])
    try:
        replies = app.control.ping(timeout=5.0) or []
    finally:
        app.close()
    suffix = "@" + socket.gethostname()
    return any(name.endswith(suffix) for reply in replies for name in reply)


if __name__ == "__main__":
    check = {"web": web, "worker": worker}[sys.argv[1]]
    sys.exit(0 if check() else 1)
