"""Settings from the environment: a bad value stops start-up with one line naming it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    # A clean environment: only what the case sets, plus a private var/ folder.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LLMOPS_VAR_DIR": str(tmp_path / "var")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u@localhost/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u@localhost:notaport/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG"),
        ({"DJANGO_DEBUG": "false"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50}, "DJANGO_ALLOWED_HOSTS"),
        ({"LLMOPS_MAX_UPLOAD_MB": "abc"}, "LLMOPS_MAX_UPLOAD_MB"),
        ({"LLMOPS_HEALTH_TIMEOUT": "5s"}, "LLMOPS_HEALTH_TIMEOUT"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(env, variable, tmp_path):
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {variable}: "), lines[0]
    assert "Traceback" not in result.stderr


def test_error_message_hides_passwords(tmp_path):
    result = manage("check", tmp_path=tmp_path, DATABASE_URL="postgres://app:hunter2@db:port/llmops")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "hunter2" not in result.stderr


def test_defaults_need_no_environment(tmp_path):
    result = manage("check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    # The development secret key is generated once, private, and reused.
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.stat().st_mode & 0o077 == 0
    first = key_file.read_text()
    assert manage("check", tmp_path=tmp_path).returncode == 0
    assert key_file.read_text() == first


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="example.com",
        DATABASE_URL="postgres://llmops:pw@db:5432/llmops",
        REDIS_URL="redis://redis:6379/0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("value", ["True", "off"])
def test_debug_accepts_the_usual_words(value, tmp_path):
    env = {"DJANGO_DEBUG": value, "DJANGO_SECRET_KEY": "s" * 60, "DJANGO_ALLOWED_HOSTS": "example.com"}
    assert manage("check", tmp_path=tmp_path, **env).returncode == 0
