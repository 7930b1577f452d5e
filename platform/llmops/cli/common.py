"""What every subcommand needs: settings, the child environment, one-line errors, probes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[3]


class CliError(Exception):
    """An expected failure: printed as ``error: <message>``, exit with ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def load_settings():
    """Import the Django settings (no app loading); a bad variable raises ImproperlyConfigured."""
    for path in (str(ROOT / "platform"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.config.settings")
    from django.conf import settings

    settings.VAR_DIR  # noqa: B018 - forces the import so errors surface here, not in a child
    return settings


def child_env(settings, **extra: str) -> dict[str, str]:
    """Environment for web/worker/beat children: the same settings as this process."""
    env = dict(os.environ)
    # An absolute path: children run with cwd=ROOT, a relative LLMOPS_VAR_DIR would move.
    env["LLMOPS_VAR_DIR"] = str(settings.VAR_DIR)
    env["DJANGO_SETTINGS_MODULE"] = os.environ["DJANGO_SETTINGS_MODULE"]
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "platform"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    # Children write into a pipe: unbuffered, or their lines arrive late and out of order.
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def redact(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def redis_error(client_url: str, timeout: float = 3.0) -> str | None:
    """None when the server answers PING within ``timeout``, else why not, in one line."""
    import redis

    client = redis.Redis.from_url(client_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()
    return None


def database_error(settings, timeout: int = 5) -> str | None:
    """None when the default database accepts a connection, else why not, in one line."""
    from django.db import connections

    connection = connections["default"]
    if connection.vendor == "postgresql":
        # libpq waits forever for an unreachable host by default.
        connection.settings_dict.setdefault("OPTIONS", {}).setdefault("connect_timeout", timeout)
    try:
        connection.ensure_connection()
    except Exception as exc:  # noqa: BLE001 - any driver error is reported, not raised
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        connection.close()
    return None


def database_label(settings) -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    vendor = db["ENGINE"].rsplit(".", 1)[-1]
    return f"{vendor} {db.get('HOST') or 'localhost'}:{db.get('PORT') or ''}/{db['NAME']}"


def say(message: str) -> None:
    print(f"llmops | {message}", flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
