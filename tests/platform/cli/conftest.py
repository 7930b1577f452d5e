"""Run the real ``llmops`` console script in a subprocess with its own var/ folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]


def llmops_argv(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("llmops")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "llmops.cli"]
    return [*base, *args]


@pytest.fixture
def var_dir():
    """A short folder: the embedded Valkey's unix socket path must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="llmops-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli_env(var_dir):
    """The environment of a fresh machine: no REDIS_URL, no DATABASE_URL, its own var/."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "TEST_REDIS_URL", "TEST_DATABASE_URL")
    }
    env["LLMOPS_VAR_DIR"] = str(var_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["LLMOPS_STOP_TIMEOUT"] = "30"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_llmops(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        llmops_argv(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


class Running:
    """A long-running ``llmops`` command whose output is collected line by line."""

    def __init__(self, *args: str, env: dict):
        self.process = subprocess.Popen(
            llmops_argv(*args),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"llmops exited ({code}) before {what}:\n{self.output}")
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"no {what} within {timeout:.0f} s:\n{self.output[-5000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill_everything(self) -> None:
        """Cleanup after a failed test: nothing of ours may survive it."""
        for proc in [*self.descendants(), psutil.Process(self.process.pid)]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.process.wait(timeout=30)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    survivors = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                survivors.append(proc)
        except psutil.NoSuchProcess:
            pass
    return survivors


@pytest.fixture
def running():
    started: list[Running] = []

    def factory(*args: str, env: dict) -> Running:
        proc = Running(*args, env=env)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        if proc.process.poll() is None:
            proc.kill_everything()


@pytest.fixture
def cli():
    """Helpers for the tests (importlib mode: test modules cannot import this conftest)."""
    return SimpleNamespace(run=run_llmops, free_port=free_port, alive=alive)
