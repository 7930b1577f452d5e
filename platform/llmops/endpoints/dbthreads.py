"""Database work of the async serving views, on a small pool of long-lived threads.

``sync_to_async``'s default (thread_sensitive) mode runs each request's database work in a
thread made for that request, which then opens its own database connection: on a small
machine that costs more than the queries. Serving requests need no per-request thread
affinity (no transaction spans two calls), so they run here instead: a fixed pool whose
threads keep their connection, checked for age and health as Django does between requests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

T = TypeVar("T")

POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="serving-db")


def _with_connection(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        # CONN_MAX_AGE 0 (the SQLite default) would close the connection on every call; a pool
        # thread keeps it instead. Servers with a max age get Django's usual checks.
        if any(conn.settings_dict.get("CONN_MAX_AGE") for conn in connections.all(initialized_only=True)):
            close_old_connections()
        return fn(*args, **kwargs)

    return run


def db(fn: Callable[..., T]) -> Callable[..., Any]:
    """``await db(fn)(...)``: call ``fn`` on a pool thread, keeping its database connection."""
    return sync_to_async(_with_connection(fn), thread_sensitive=False, executor=POOL)


def on_pool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """From sync code (a response's close(), on whatever thread Django calls it): run ``fn``
    on a pool thread and wait, so it uses that thread's open connection, not a new one."""
    return POOL.submit(_with_connection(fn), *args, **kwargs).result()
