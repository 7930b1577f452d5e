"""``llmops worker -Q gpu``: add workers to a platform whose Redis and database are shared."""

from __future__ import annotations

import argparse
import os

from llmops.cli.common import (
    CliError,
    database_error,
    database_label,
    load_settings,
    redact,
    redis_error,
    warn,
)
from llmops.cli.embedded import answers_ping
from llmops.cli.gpus import detect_gpus
from llmops.cli.processes import positive_int_env, worker_specs
from llmops.cli.supervisor import SignalGate, Supervisor


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="start Celery workers for one or more queues (scale-out on another machine)",
        description=(
            "Start a Celery worker on the given queues, pointed at REDIS_URL and DATABASE_URL. "
            "With the gpu queue and several GPUs, one worker process per GPU, each pinned with "
            "CUDA_VISIBLE_DEVICES and running one node at a time. Without REDIS_URL it joins the "
            "embedded Valkey of an `llmops up` running in the same var/ folder."
        ),
    )
    parser.add_argument("-Q", "--queues", required=True, help="comma-separated: cpu, gpu, serve")
    parser.add_argument("-c", "--concurrency", type=_positive, default=None,
                        help="processes per worker (default: CPU count; always 1 per GPU)")
    parser.add_argument("-n", "--name", default=None,
                        help="Celery node name (default <queues>-<pid>@<host>; GPU workers add their index)")
    parser.add_argument("-l", "--loglevel", default="INFO", help="Celery log level (default INFO)")
    parser.set_defaults(func=run)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    queues = _queues(args.queues, settings.LLMOPS_QUEUES)
    _check_broker(settings)
    _check_database(settings)
    label = "-".join(queues)
    if "gpu" in queues:
        devices = detect_gpus()
        if args.concurrency and args.concurrency > 1:
            warn("--concurrency is ignored with the gpu queue: one node at a time per GPU")
        if not devices:
            print(f"llmops | no GPU found: the {label} worker runs gpu-queue nodes on the CPU", flush=True)
        elif len(devices) > 1:
            print(f"llmops | {len(devices)} GPUs: one {label} worker per GPU", flush=True)
    name = args.name or f"{label}-{os.getpid()}@%h"
    specs = worker_specs(settings, queues=queues, label=label, name=name,
                         concurrency=args.concurrency, loglevel=args.loglevel)
    with SignalGate() as gate:
        supervisor = Supervisor(gate, stop_timeout=positive_int_env("LLMOPS_STOP_TIMEOUT", 15))
        try:
            supervisor.start_all(specs)
            code = supervisor.watch()
        finally:
            supervisor.stop_all()
    return code


def _queues(value: str, known: tuple[str, ...]) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in queues if q not in known]
    if not queues or unknown:
        bad = ", ".join(unknown) or repr(value)
        raise CliError(f"unknown queue {bad}: choose from {', '.join(known)}", 2)
    return queues


def _check_broker(settings) -> None:
    if settings.REDIS_EMBEDDED:
        socket_path = settings.EMBEDDED_REDIS_SOCKET
        if not answers_ping(socket_path):
            raise CliError(
                "REDIS_URL is not set and no `llmops up` is running here (nothing answers on "
                f"{socket_path}). To join a platform on other machines, set REDIS_URL=redis://HOST:6379/0 "
                "and DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/NAME to its shared servers.",
                2,
            )
        print(f"llmops | broker: the embedded Valkey of `llmops up` on {socket_path}", flush=True)
        return
    problem = redis_error(settings.REDIS.client_url)
    shown = redact(settings.REDIS_URL)
    if problem:
        warn(f"broker {shown} is not reachable yet ({problem}); the worker keeps retrying "
             "(lines 'consumer: Cannot connect ... Trying again'). Check REDIS_URL and the Redis server.")
    else:
        print(f"llmops | broker: {shown}", flush=True)


def _check_database(settings) -> None:
    if settings.REDIS_EMBEDDED:
        return  # same machine as `llmops up`: same settings, same database
    if not os.environ.get("DATABASE_URL"):
        warn(f"DATABASE_URL is not set: this worker uses {database_label(settings)}, which workers on "
             "other machines cannot share. Point DATABASE_URL at the platform's PostgreSQL.")
        return
    problem = database_error(settings)
    if problem:
        warn(f"database {database_label(settings)} is not reachable yet ({problem}); "
             "nodes fail until it is.")
