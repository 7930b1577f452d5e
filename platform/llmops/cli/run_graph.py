"""``llmops run GRAPH.json``: run a graph through the platform's engine, with a progress bar
per node in the terminal. Exit code 0 only when every node succeeded (or was cached).

The graph becomes a pipeline of the user (``--user``; default: the only user, else ``demo``)
named after the file (``--name``), a new version only when the graph changed. The run goes
through the same Celery workers as the web. When no worker listens on a queue the graph needs,
a temporary worker is started for the run (and the embedded Valkey, when it is the broker and
is down), then stopped; ``--no-start`` refuses instead. Ctrl-C cancels the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.cli.common import ROOT, CliError, child_env, load_settings, say

POLL_S = 0.2
BAR_WIDTH = 24
WORKER_READY_TIMEOUT = 90.0
TERMINAL = ("succeeded", "failed", "cancelled")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a pipeline graph (JSON) on the workers and show its progress",
        description=(
            "Run GRAPH.json (a bare graph or an exported pipeline) through the run engine and "
            "print a progress bar per node. Exit code 0 only when the run succeeds."
        ),
    )
    parser.add_argument("graph", type=Path, help="the graph file (JSON)")
    parser.add_argument(
        "--user", default=None, help="owner of the pipeline (default: the only user, else demo)"
    )
    parser.add_argument("--name", default=None, help="pipeline name (default: the file name)")
    parser.add_argument("--force", action="store_true", help="run every node even when cached outputs exist")
    parser.add_argument(
        "--timeout", type=float, default=0, help="give up (and cancel) after this many seconds"
    )
    parser.add_argument(
        "--no-start", action="store_true", help="fail instead of starting a worker when a queue has none"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    load_settings()
    import django

    django.setup()
    _migrate_if_needed()
    data = _read_graph(args.graph)
    user = _user(args.user)
    pipeline = _pipeline(user=user, graph=data, name=args.name or args.graph.stem)
    with TemporaryWorkers() as workers:
        missing = _queues_without_workers(data)
        if missing:
            if args.no_start:
                raise CliError(
                    f"no worker is listening on queue {', '.join(missing)}; start `llmops up` or "
                    f"`llmops worker -Q {','.join(missing)}` (or leave out --no-start)",
                    2,
                )
            workers.start(missing)
        return _run(user=user, pipeline=pipeline, force=args.force, timeout=args.timeout)


def _migrate_if_needed() -> None:
    """A fresh var/ folder has no tables yet; `llmops up` migrates, so this does the same."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        say("applying database migrations")
        call_command("migrate", interactive=False, verbosity=0)


def _read_graph(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", 2) from exc
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}", 2) from exc
    if isinstance(data, dict) and "graph" in data:  # an exported pipeline
        data = data["graph"]
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a JSON object (a graph)", 2)
    return data


def _user(username: str | None):
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True)
    if username:
        user = users.filter(username=username).first()
        if user is None:
            raise CliError(f"no user {username!r}; create one with `llmops manage createsuperuser`", 2)
        return user
    count = users.count()
    if count == 0:
        raise CliError("there is no user yet: create one with `llmops manage createsuperuser`", 2)
    if count == 1:
        return users.get()
    user = users.filter(username="demo").first()
    if user is None:
        raise CliError("several users exist and none is called demo: say which with --user NAME", 2)
    return user


def _pipeline(*, user, graph: dict[str, Any], name: str):
    from llmops.builder.models import Pipeline
    from llmops.builder.services import PipelineError, pipeline_create, pipeline_update

    workspace = user.workspaces.order_by("id").first()
    if workspace is None:
        raise CliError(f"user {user.username} has no workspace", 2)
    try:
        pipeline = Pipeline.objects.alive().filter(workspace=workspace, name=name).order_by("-id").first()
        if pipeline is None:
            return pipeline_create(
                workspace=workspace, user=user, name=name, graph=graph, message="llmops run"
            )
        latest = pipeline.latest_version
        if latest is None or latest.graph != _normalised(graph):
            pipeline_update(pipeline=pipeline, user=user, graph=graph, message="llmops run")
        return pipeline
    except PipelineError as exc:
        raise CliError(exc.message, 2) from exc


def _normalised(graph: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from pipelines.graph import Graph

    try:
        return Graph.model_validate(graph).to_json()
    except ValidationError:
        return graph


def _queues_without_workers(graph: dict[str, Any]) -> list[str]:
    from llmops.runs.selectors import queue_coverage
    from pipelines.registry import find_spec

    wanted = set()
    for node in graph.get("nodes") or []:
        spec = find_spec(str(node.get("kind"))) if isinstance(node, dict) else None
        if spec is not None:
            wanted.add(spec.queue)
    coverage = queue_coverage()
    return sorted(q for q in wanted if not coverage.get(q))


def _run(*, user, pipeline, force: bool, timeout: float) -> int:
    from llmops.runs.services import RunError, run_cancel, run_start

    try:
        run = run_start(user=user, pipeline=pipeline, force=force)
    except RunError as exc:
        for error in exc.errors[:20]:
            where = error.get("node") or "graph"
            print(f"  {where}: {error.get('message')}", file=sys.stderr)
        raise CliError(exc.message, 1) from exc
    say(f"run #{run.pk} of {pipeline.name} (version {run.version.number}) started")
    view = ProgressView(run)
    deadline = time.monotonic() + timeout if timeout else None
    try:
        status = view.follow(deadline)
    except KeyboardInterrupt:
        run_cancel(user=user, run=run)
        view.drain()
        say(f"run #{run.pk} cancelled")
        return 130
    if status is None:
        run_cancel(user=user, run=run)
        view.drain()
        say(f"run #{run.pk} took longer than {timeout:g}s: cancelled")
        return 1
    say(f"run #{run.pk} {status}" + (f": {view.error}" if view.error else ""))
    return 0 if status == "succeeded" else 1


@dataclass
class NodeLine:
    node_id: str
    label: str
    status: str = "queued"
    progress: float | None = None
    message: str = ""
    eta_s: float | None = None
    quarter: int = 0  # the last quarter of progress printed (without a terminal)

    def render(self, width: int) -> str:
        fraction = 1.0 if self.status in ("succeeded", "cached") else self.progress
        filled = round((fraction or 0) * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        pct = f"{fraction * 100:3.0f}%" if fraction is not None else "   -"
        eta = f" ETA {self.eta_s:.0f}s" if self.status == "running" and self.eta_s is not None else ""
        text = f"{self.label[:18]:<18} [{bar}] {pct} {self.status:<9}{eta} {self.message}"
        return text[:width]


@dataclass
class ProgressView:
    """Follows a run's stored events and draws one line per node (redrawn in place on a TTY)."""

    run: Any
    last_seq: int = 0
    lines: dict[str, NodeLine] = field(default_factory=dict)
    status: str | None = None
    error: str = ""
    drawn: int = 0

    def __post_init__(self) -> None:
        for node in self.run.node_runs.order_by("position"):
            self.lines[node.node_id] = NodeLine(node.node_id, node.label or node.node_id)
        self.tty = sys.stdout.isatty()

    def follow(self, deadline: float | None) -> str | None:
        while self.status not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                return None
            self.drain()
            time.sleep(POLL_S)
        return self.status

    def drain(self) -> None:
        from llmops.runs.selectors import events_after

        events = events_after(run_id=self.run.pk, after=self.last_seq)
        for event in events:
            self.last_seq = event["seq"]
            self.apply(event)
        if events and self.tty:
            self.redraw()

    def apply(self, event: dict[str, Any]) -> None:
        if event["node"] is None:
            if event["type"] == "run":
                self.status = event["status"]
                self.error = event.get("message", "")
            return
        line = self.lines.get(event["node"])
        if line is None or event["type"] == "metric":
            return
        if event["type"] == "log":
            self.say(f"{event['node']}: {event.get('message', '')}")
            return
        before = line.status
        line.status = event.get("status", line.status)
        line.progress = event.get("progress", line.progress if event["type"] == "progress" else None)
        line.eta_s = event.get("eta_s")
        line.message = event.get("message", line.message)
        if self.tty:
            return
        # Without a terminal (CI logs): one line per state change and per quarter of progress.
        quarter = int((line.progress or 0) * 4) if line.status == "running" else 0
        if line.status != before or event["type"] == "failed" or quarter > line.quarter:
            print(line.render(200), flush=True)
        line.quarter = quarter

    def say(self, text: str) -> None:
        if self.tty:
            self.clear()
        print(f"  {text}", flush=True)

    def clear(self) -> None:
        if self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def redraw(self) -> None:
        width = shutil.get_terminal_size((120, 20)).columns - 1
        self.clear()
        for line in self.lines.values():
            sys.stdout.write(line.render(width) + "\n")
        self.drawn = len(self.lines)
        sys.stdout.flush()


class TemporaryWorkers:
    """Workers (and the embedded Valkey) started for one run and stopped after it."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.valkey = None

    def __enter__(self) -> TemporaryWorkers:
        return self

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

    def start(self, queues: list[str]) -> None:
        from django.conf import settings

        from llmops.cli.processes import worker_argv

        self._ensure_broker(settings)
        say(f"no worker on queue {', '.join(queues)}: starting one for this run")
        log_dir = Path(settings.VAR_DIR) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = worker_argv(queues=queues, name=f"run-{os.getpid()}@%h", concurrency=1, loglevel="WARNING")
        with (log_dir / "llmops-run-worker.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=child_env(settings),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self._wait_ready(queues)

    def _ensure_broker(self, settings) -> None:
        from llmops.cli.embedded import EmbeddedValkey, answers_ping

        if settings.REDIS_EMBEDDED and not answers_ping(Path(settings.EMBEDDED_REDIS_SOCKET)):
            say("starting the embedded Valkey")
            self.valkey = EmbeddedValkey(Path(settings.EMBEDDED_REDIS_SOCKET))
            self.valkey.start()

    def _wait_ready(self, queues: list[str]) -> None:
        from llmops.runs.selectors import queue_coverage

        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise CliError("the worker stopped right after starting; see var/logs/llmops-run-worker.log")
            coverage = queue_coverage()
            if all(coverage.get(q) for q in queues):
                return
            time.sleep(0.3)
        raise CliError(f"no worker came up within {WORKER_READY_TIMEOUT:.0f}s")
