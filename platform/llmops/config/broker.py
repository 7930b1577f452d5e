"""One Redis/Valkey address, spelled the way each client wants it.

Celery wants ``redis+socket:///path`` for a unix socket, channels-redis wants
``unix:///path`` and redis-py wants ``unix:///path``; TCP URLs are shared as-is.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RedisTarget:
    url: str
    socket_path: str | None = None

    @property
    def celery_url(self) -> str:
        if self.socket_path:
            return f"redis+socket://{self.socket_path}"
        return self.url

    @property
    def client_url(self) -> str:
        """For redis-py, channels-redis and Django's cache."""
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return self.url

    def describe(self) -> str:
        return f"unix socket {self.socket_path}" if self.socket_path else self.url


def parse_redis_url(url: str) -> RedisTarget:
    """Accept redis://, rediss://, unix:// and redis+socket:// URLs; raise ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("unix", "redis+socket", "valkey+unix"):
        if not parts.path or not parts.path.startswith("/"):
            raise ValueError("a unix socket URL needs an absolute path, e.g. unix:///tmp/valkey.sock")
        return RedisTarget(url=url, socket_path=parts.path)
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError("a redis:// URL needs a host, e.g. redis://127.0.0.1:6379/0")
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        return RedisTarget(url=url)
    raise ValueError(f"unsupported scheme {parts.scheme!r}; use redis://, rediss:// or unix://")


_clients: dict[tuple[int, str], Any] = {}
_clients_lock = threading.Lock()


def redis_client():
    """This process's redis-py client for the platform's Redis (thread-safe, pooled).

    For hot paths that run on many threads: Django's cache object is per async context, so
    under ASGI each request would build its own client and open a new connection."""
    import redis
    from django.conf import settings

    url = settings.REDIS.client_url
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
                _clients[key] = client
    return client
