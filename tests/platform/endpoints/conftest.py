"""Endpoint fixtures: tiny real services stored as artifacts, published endpoints with keys, and
a live stack (daphne + a real serve worker) on the test database and Redis."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipelines.serving import toys

ROOT = Path(__file__).resolve().parents[3]
URLCONF = "tests.platform.endpoints.live_urls"


# --- tiny services -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def toy_services(tmp_path_factory) -> dict[str, Path]:
    """SERVICE folders built by the real serve.rag node: extractive, generate, two-adapter LoRA."""
    root = tmp_path_factory.mktemp("endpoint-services")
    model = toys.build_model(root / "model")
    index = toys.build_index(root / "index")
    adapters = {
        name: toys.build_adapter(model, root / "adapters" / name, seed=n)
        for n, name in enumerate(toys.ADAPTERS, start=1)
    }
    common = {"model": model, "index": index}
    slow = toys.build_model(root / "slow-model", toys.slow_config())
    return {
        "slow": toys.build_service(
            root / "s-slow",
            mode="generate",
            top_k=1,
            max_tokens=1500,
            temperature=0.0,
            model=slow,
            index=index,
        ),
        "extractive": toys.build_service(root / "s-extractive", mode="extractive", top_k=2, **common),
        "generate": toys.build_service(
            root / "s-generate", mode="generate", top_k=2, max_tokens=48, temperature=0.0, **common
        ),
        "lora": toys.build_service(
            root / "s-lora",
            mode="generate",
            top_k=2,
            max_tokens=8,
            temperature=0.0,
            adapters=adapters,
            descriptions=dict(toys.ADAPTERS),
            **common,
        ),
    }


def store_service(*, workspace, folder: Path, name: str):
    """The folder as a SERVICE artifact of ``workspace`` (same content: same key, warm on workers)."""
    from llmops.runs.storage import store_artifact
    from pipelines.serving.protocol import ServiceConfig

    digest = hashlib.sha256((folder / "service.json").read_bytes()).hexdigest()[:16]
    return store_artifact(
        workspace_id=workspace.pk,
        key=f"test-{name}-{digest}",
        type="Service",
        path=folder,
        metadata=ServiceConfig.load(folder).facts(),
        node_run_id=None,
        port="service",
        input_ids=[],
    )


def workspace_of(user):
    return user.workspaces.first()


@pytest.fixture
def publish(toy_services):
    """publish(user, kind="extractive", slug=None) -> (endpoint, secret of a new endpoint key)."""
    from llmops.endpoints import services

    def factory(user, kind: str = "extractive", slug: str | None = None, **options):
        workspace = workspace_of(user)
        artifact = store_service(workspace=workspace, folder=toy_services[kind], name=kind)
        publication = services.endpoint_publish_artifact(
            user=user,
            workspace=workspace,
            artifact=artifact,
            slug=slug or f"{kind}-{workspace.pk}",
            **options,
        )
        _, secret = services.key_create(
            user=user, workspace=workspace, endpoint=publication.endpoint, name="k"
        )
        return publication.endpoint, secret

    return factory


# --- the live stack ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses that share the test database and Redis (as the worker
    fixture in tests/conftest.py does)."""
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
    env["HF_HUB_OFFLINE"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # tiny models; two cores shared with the web and other tests
    for name in ("TEST_REDIS_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        from django.conf import settings

        logs = Path(settings.VAR_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.name, self.log_path = name, logs / f"{name}.log"
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass


def start_web(env: dict[str, str]) -> tuple[Process, str]:
    port = _free_port()
    web = Process(
        f"daphne-{port}",
        [
            sys.executable,
            "-m",
            "daphne",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "tests.platform.endpoints.live_asgi:application",
        ],
        env,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        web.check()
        try:
            httpx.get(url + "/v1/models", timeout=2)
            return web, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"daphne did not start: {web.log_path.read_text()[-3000:]}")


def start_serve_worker(env: dict[str, str], name: str = "serve-test") -> Process:
    """A real Celery worker on the serve queue, as `llmops up` starts it (prefork)."""
    from llmops.core.health import workers_by_queue

    worker = Process(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gpu_worker.celery_app",
            "worker",
            "-Q",
            "serve",
            "-n",
            f"{name}@%h",
            "--concurrency",
            "1",
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        worker.check()
        if any(w.startswith(name + "@") for w in workers_by_queue(timeout=0.5).get("serve", [])):
            return worker
        time.sleep(0.3)
    raise TimeoutError(f"serve worker not ready: {worker.log_path.read_text()[-3000:]}")


@dataclass
class Stack:
    url: str
    web: Process
    worker: Process | None


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker):
    """daphne + one serve worker for the module; tests use transactional_db so both see the data."""
    env = stack_env(LLMOPS_SERVE_ACCEPT_TIMEOUT_S="20", LLMOPS_SERVE_TIMEOUT_S="60")
    with django_db_blocker.unblock():
        worker = start_serve_worker(env)
    web, url = start_web(env)
    yield Stack(url=url, web=web, worker=worker)
    web.stop()
    worker.stop()


@pytest.fixture(scope="module")
def live_without_workers(django_db_setup, django_db_blocker):
    env = stack_env(LLMOPS_SERVE_ACCEPT_TIMEOUT_S="1.5", LLMOPS_SERVE_TIMEOUT_S="10")
    web, url = start_web(env)
    yield Stack(url=url, web=web, worker=None)
    web.stop()
