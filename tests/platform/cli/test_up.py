"""``llmops up``: the real console script, real Valkey, real workers, real signals."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.timeout(400)


def _healthz(port: int) -> tuple[int | None, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None, {}


def _stale_socket(path) -> None:
    """A socket file nobody listens on, as a SIGKILLed run leaves behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_up_serves_healthz_with_every_queue_then_stops_without_orphans(cli, cli_env, var_dir, running):
    sock_path = var_dir / "valkey" / "valkey.sock"
    _stale_socket(sock_path)
    port = cli.free_port()
    up = running("up", "--port", str(port), env=cli_env)

    ready = {}

    def healthy() -> bool:
        status, body = _healthz(port)
        ready.update(body)
        return status == 200

    up.wait_for(healthy, timeout=180, what="/healthz 200")
    queues = ready["checks"]["workers"]["queues"]
    assert all(queues[q]["workers"] for q in ("cpu", "gpu", "serve")), queues
    for prefix in ("web", "cpu", "gpu", "serve", "beat"):
        assert any(line.startswith(f"{prefix} ") and "| " in line for line in up.lines), prefix
    up.wait_for(lambda: "ready: /healthz is 200" in up.output, timeout=30, what="the ready line")

    # A second `llmops up` on the same var/ refuses to share the embedded Valkey.
    second = cli.run("up", "--port", str(cli.free_port()), env=cli_env)
    assert second.returncode != 0
    assert second.stderr.strip().startswith("error: an embedded Valkey already answers"), second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert sock_path.exists() and _healthz(port)[0] == 200  # the first one is untouched

    children = up.descendants()
    assert len(children) >= 6, children  # valkey, daphne, 3 workers (+ pool processes), beat
    assert up.stop(signal.SIGTERM) == 0, up.output[-3000:]
    assert cli.alive(children) == [], [p.cmdline() for p in cli.alive(children)]
    assert not sock_path.exists()
    assert up.lines[-1] == "llmops | stopped"


def test_a_dying_child_stops_everything_with_an_error(cli, cli_env, var_dir, running):
    port = cli.free_port()
    up = running("up", "--port", str(port), "--no-workers", env=cli_env)
    up.wait_for(lambda: "web is up" in up.output, timeout=120, what="the web server")
    children = up.descendants()
    daphne = next(p for p in children if "daphne" in " ".join(p.cmdline()))
    daphne.kill()
    code = up.process.wait(timeout=90)
    assert code == 1
    assert "web exited unexpectedly" in up.output
    assert cli.alive(children) == []
    assert not (var_dir / "valkey" / "valkey.sock").exists()


def test_port_in_use_is_one_line_and_starts_nothing(cli, cli_env, var_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli.run("up", "--port", str(port), env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use: stop whatever listens there, "
        "or choose another port (llmops up --port N, make run PORT=N)"
    )
    assert "Traceback" not in result.stdout
    assert not (var_dir / "valkey" / "valkey.sock").exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DJANGO_DEBUG", "maybe", "error: DJANGO_DEBUG: invalid value 'maybe'"),
        ("REDIS_URL", "ftp://example.org", "error: REDIS_URL: unsupported scheme 'ftp'"),
        ("LLMOPS_CPU_CONCURRENCY", "many", "error: LLMOPS_CPU_CONCURRENCY: invalid value 'many'"),
    ],
)
def test_bad_environment_is_one_line_naming_the_variable(cli, cli_env, variable, value, message):
    cli_env[variable] = value
    result = cli.run("up", "--port", str(cli.free_port()), env=cli_env)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unreachable_redis_url_is_one_line(cli, cli_env):
    dead = cli.free_port()  # nothing listens there once the probe socket is closed
    cli_env["REDIS_URL"] = f"redis://:secret@127.0.0.1:{dead}/0"
    result = cli.run("up", "--port", str(cli.free_port()), env=cli_env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach REDIS_URL=redis://:***@127.0.0.1:{dead}/0:")
    assert "secret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
