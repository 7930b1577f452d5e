"""Child processes with prefixed output and a clean stop: no orphans, whatever happens.

Each child gets its own session (process group) so that a terminal's Ctrl-C reaches only
``llmops``, which then stops the children in order: SIGTERM to each group (Celery finishes
or rejects its current task, prefork pool children included), then SIGKILL after a timeout.
On Linux each child also gets PR_SET_PDEATHSIG, so even a SIGKILLed ``llmops`` takes its
children with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_COLORS = ["36", "33", "35", "32", "34", "31", "96", "93"]
_PR_SET_PDEATHSIG = 1


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen
    reader: threading.Thread | None = field(default=None)

    @property
    def name(self) -> str:
        return self.spec.name

    def group_alive(self) -> bool:
        """Is any process of this child's group left? (Reaps the leader first.)"""
        self.process.poll()
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


class SignalGate:
    """Records SIGINT/SIGTERM/SIGHUP instead of raising, so every stop goes through cleanup."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        self.count += 1

    def __enter__(self) -> SignalGate:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to this child when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, gate: SignalGate, *, stop_timeout: float = 15.0, out: TextIO | None = None):
        self.gate = gate
        self.stop_timeout = stop_timeout
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._color = self.out.isatty() and not os.environ.get("NO_COLOR")
        self._width = len("llmops") + 1

    # --- output -------------------------------------------------------------------------
    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<{self._width}}| "
        if self._color:
            return f"\x1b[{_COLORS[index % len(_COLORS)]}m{label}\x1b[0m"
        return label

    def write(self, prefix: str, line: str) -> None:
        with self._lock:
            try:
                self.out.write(prefix + line + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass  # our own output is gone (closed pipe): the children still get stopped

    def say(self, message: str) -> None:
        self.write(self._prefix("llmops", 7), message)

    def _pump(self, child: Child, prefix: str) -> None:
        for raw in iter(child.process.stdout.readline, b""):
            self.write(prefix, raw.decode(errors="replace").rstrip("\r\n"))
        child.process.stdout.close()

    # --- lifecycle ----------------------------------------------------------------------
    def start_all(self, specs: list[ChildSpec]) -> None:
        """Spawn every child first, then the reader threads: fork with preexec_fn needs no threads."""
        self._width = max([len("llmops") + 1, *(len(s.name) + 1 for s in specs)])
        for spec in specs:
            process = subprocess.Popen(
                spec.argv, cwd=spec.cwd, env=spec.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
            self.children.append(Child(spec, process))
        for index, child in enumerate(self.children):
            child.reader = threading.Thread(
                target=self._pump, args=(child, self._prefix(child.name, index)),
                name=f"pump-{child.name}", daemon=True,
            )
            child.reader.start()

    def watch(self) -> int:
        """Block until a signal (exit 0) or a child's death (exit 1)."""
        while self.gate.signum is None:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    if child.reader:
                        child.reader.join(timeout=2)  # its last lines first, then the verdict
                    self.say(f"{child.name} exited unexpectedly (exit code {code}); stopping everything")
                    return 1
            time.sleep(0.2)
        self.say(f"{self.gate.name} received: stopping everything")
        return 0

    def stop_all(self) -> None:
        self.stopping.set()
        alive = [c for c in self.children if c.group_alive()]
        for child in alive:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        signals_seen = self.gate.count
        while alive and time.monotonic() < deadline and self.gate.count <= signals_seen:
            time.sleep(0.1)
            alive = [c for c in alive if c.group_alive()]
        for child in alive:
            # A second Ctrl-C, or a task that does not let go within the timeout.
            self.say(f"{child.name} did not stop in time: killing it")
            child.signal_group(signal.SIGKILL)
        for child in self.children:
            child.process.wait()
            if child.reader:
                child.reader.join(timeout=5)
