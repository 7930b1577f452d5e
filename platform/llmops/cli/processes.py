"""The command lines of the platform's processes: web (daphne), Celery workers, beat."""

from __future__ import annotations

import os
import sys

from llmops.cli.common import ROOT, CliError, child_env
from llmops.cli.gpus import detect_gpus
from llmops.cli.supervisor import ChildSpec

CELERY_APP = "gpu_worker.celery_app"


def web_spec(settings, *, host: str, port: int) -> ChildSpec:
    argv = [sys.executable, "-m", "daphne", "--bind", host, "--port", str(port),
            "llmops.config.asgi:application"]
    return ChildSpec("web", argv, child_env(settings), ROOT)


def _celery(quiet: bool) -> list[str]:
    # --quiet drops the start-up banner: `llmops up` prints five processes' worth of output.
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *(["--quiet"] if quiet else [])]


def worker_argv(*, queues: list[str], name: str, concurrency: int | None,
                loglevel: str = "INFO", quiet: bool = False) -> list[str]:
    argv = [*_celery(quiet), "worker", "-Q", ",".join(queues),
            "-n", name, "--pool", "prefork", "--loglevel", loglevel]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return argv


def worker_specs(settings, *, queues: list[str], label: str, name: str | None = None,
                 concurrency: int | None = None, loglevel: str = "INFO",
                 quiet: bool = False) -> list[ChildSpec]:
    """One worker for these queues; with ``gpu`` among them, one per GPU pinned to it.

    A GPU worker runs one node at a time: a second node on the same card would fight the
    first for memory.
    """
    def spec(child: str, node: str, processes: int | None, **pin: str) -> ChildSpec:
        argv = worker_argv(queues=queues, name=node, concurrency=processes, loglevel=loglevel, quiet=quiet)
        env = child_env(settings, **pin)
        if pin:
            env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's index = NVML's index
        return ChildSpec(child, argv, env, ROOT)

    node = name or f"{label}@%h"
    if "gpu" not in queues:
        return [spec(label, node, concurrency)]
    devices = detect_gpus()
    if len(devices) <= 1:
        return [spec(label, node, 1, **({"CUDA_VISIBLE_DEVICES": devices[0]} if devices else {}))]
    return [
        spec(f"{label}{index}", node.replace("@", f".{index}@", 1), 1,
             CUDA_VISIBLE_DEVICES=device)
        for index, device in enumerate(devices)
    ]


def beat_spec(settings, *, quiet: bool = True) -> ChildSpec:
    schedule = settings.VAR_DIR / "celerybeat-schedule"
    argv = [*_celery(quiet), "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
    return ChildSpec("beat", argv, child_env(settings), ROOT)


def positive_int_env(variable: str, default: int) -> int:
    value = os.environ.get(variable, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise CliError(f"{variable}: invalid value {value!r} (a whole number of processes, 1 or more)", 2)
    return int(value)
