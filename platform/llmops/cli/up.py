"""``llmops up``: the whole platform on this machine, stopped cleanly by Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

from llmops.cli.common import ROOT, CliError, child_env, database_error, load_settings, redact, redis_error
from llmops.cli.embedded import EmbeddedValkey
from llmops.cli.processes import beat_spec, positive_int_env, web_spec, worker_specs
from llmops.cli.supervisor import SignalGate, Supervisor

READY_TIMEOUT = 300.0  # seconds until a /healthz that is not 200 is worth a warning


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start everything here: Valkey, migrations, web, workers (cpu, gpu, serve), beat",
        description=(
            "Start the platform on this machine: an embedded Valkey on a unix socket under var/ "
            "(unless REDIS_URL is set), database migrations, the ASGI web server, one Celery worker "
            "per queue (cpu, gpu, serve; one gpu worker per GPU) and Celery beat. Ctrl-C or "
            "SIGTERM stops all of them."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--no-workers", action="store_true",
                        help="web only: workers and beat run elsewhere (llmops worker)")
    parser.set_defaults(func=run)


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535)")
    return int(value)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    ensure_port_free(args.host, args.port)
    stop_timeout = positive_int_env("LLMOPS_STOP_TIMEOUT", 15)
    specs = [web_spec(settings, host=args.host, port=args.port)]
    if not args.no_workers:
        cpu = positive_int_env("LLMOPS_CPU_CONCURRENCY", min(4, os.cpu_count() or 1))
        serve = positive_int_env("LLMOPS_SERVE_CONCURRENCY", 1)
        specs += worker_specs(settings, queues=["cpu"], label="cpu", concurrency=cpu, quiet=True)
        specs += worker_specs(settings, queues=["gpu"], label="gpu", quiet=True)
        specs += worker_specs(settings, queues=["serve"], label="serve", concurrency=serve, quiet=True)
        specs.append(beat_spec(settings))

    # The gate is outermost: a signal during cleanup is recorded, never a KeyboardInterrupt.
    with SignalGate() as gate, ExitStack() as cleanup:
        _prepare_broker(settings, cleanup)
        if gate.signum is None:
            _check_database(settings)
            _migrate(settings, gate)
        if gate.signum is not None:
            return 0
        supervisor = Supervisor(gate, stop_timeout=stop_timeout)
        cleanup.callback(supervisor.stop_all)
        supervisor.start_all(specs)
        threading.Thread(target=_announce, args=(supervisor, args, settings.VAR_DIR),
                         name="announce", daemon=True).start()
        code = supervisor.watch()
    print(f"llmops | stopped{' after an error' if code else ''}", flush=True)
    return code


def ensure_port_free(host: str, port: int) -> None:
    """Fail before starting anything when the web server could not listen."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on --host {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        # The web server sets SO_REUSEADDR too: a port in TIME_WAIT is free for it, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use: stop whatever listens there, "
                    f"or choose another port (llmops up --port N, make run PORT=N)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CliError(f"cannot listen on {host}: no such address on this machine") from None
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _prepare_broker(settings, cleanup: ExitStack) -> None:
    if settings.REDIS_EMBEDDED:
        valkey = EmbeddedValkey(settings.EMBEDDED_REDIS_SOCKET)
        cleanup.callback(valkey.stop)
        valkey.start()
        print(f"llmops | embedded Valkey on {settings.EMBEDDED_REDIS_SOCKET}", flush=True)
        return
    problem = redis_error(settings.REDIS.client_url)
    if problem:
        raise CliError(f"cannot reach REDIS_URL={redact(settings.REDIS_URL)}: {problem}")
    print(f"llmops | Redis at {redact(settings.REDIS_URL)}", flush=True)


def _check_database(settings) -> None:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return  # a file under var/: migrate creates it
    problem = database_error(settings)
    if problem:
        url = redact(os.environ.get("DATABASE_URL", ""))
        raise CliError(f"cannot reach DATABASE_URL={url}: {problem}")


def _migrate(settings, gate: SignalGate) -> None:
    print("llmops | applying database migrations", flush=True)
    argv = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "1"]
    process = subprocess.Popen(argv, cwd=ROOT, env=child_env(settings), start_new_session=True)
    while process.poll() is None:
        if gate.signum is not None:
            process.terminate()
            process.wait()
            return
        time.sleep(0.1)
    if process.returncode != 0:
        raise CliError(f"`manage.py migrate` failed (exit code {process.returncode}); see its output above")


def _announce(supervisor: Supervisor, args: argparse.Namespace, var_dir) -> None:
    """Say when the web answers, then when /healthz is 200 (every queue has a worker)."""
    probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(args.host, args.host)  # noqa: S104
    shown = f"[{probe}]" if ":" in probe else probe
    url = f"http://{shown}:{args.port}/"
    started, announced, status = time.monotonic(), False, None
    while not supervisor.stopping.is_set():
        status = _get_status(url + "healthz")
        if status is not None and not announced:
            announced = True
            supervisor.say(f"web is up: {url}   (Ctrl-C stops everything)")
            if (var_dir / "demo_password").exists():
                supervisor.say(f"demo login: user demo, password in {var_dir / 'demo_password'}")
            if args.no_workers:
                return
        if status == 200:
            supervisor.say("ready: /healthz is 200 (database, broker, channel layer, "
                           "workers on cpu, gpu, serve)")
            return
        if time.monotonic() - started > READY_TIMEOUT:
            supervisor.say(f"warning: /healthz still answers {status} after {READY_TIMEOUT:.0f} s; "
                           f"see {url}healthz")
            return
        supervisor.stopping.wait(1.0)


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own http URL
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None
