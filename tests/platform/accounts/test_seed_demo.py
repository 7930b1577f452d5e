"""seed_demo: the demo user and workspace, idempotent, a stored password, an extension point."""

from __future__ import annotations

import sys
import types

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from llmops.accounts.models import Membership, Role, Workspace


def run(capsys, *args) -> str:
    call_command("seed_demo", *args)
    return capsys.readouterr().out


def test_creates_demo_and_prints_how_to_sign_in(db, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "VAR_DIR", tmp_path)
    monkeypatch.setenv("PORT", "8123")
    out = run(capsys)
    password = (tmp_path / "demo_password").read_text().strip()
    assert (tmp_path / "demo_password").stat().st_mode & 0o077 == 0
    assert "http://127.0.0.1:8123/" in out and "demo" in out and password in out
    user = get_user_model().objects.get(username="demo")
    assert user.check_password(password)
    membership = Membership.objects.get(user=user)
    assert membership.workspace.name == "Demo workspace" and membership.role == Role.OWNER


def test_is_idempotent_and_keeps_the_password(db, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "VAR_DIR", tmp_path)
    run(capsys)
    first = (tmp_path / "demo_password").read_text()
    run(capsys)
    assert (tmp_path / "demo_password").read_text() == first
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert Workspace.objects.filter(name="Demo workspace").count() == 1
    # A changed password is put back to the stored one, so the printed block is always true.
    user = get_user_model().objects.get(username="demo")
    user.set_password("something else")
    user.save()
    run(capsys)
    user.refresh_from_db()
    assert user.check_password(first.strip())


def test_new_password(db, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "VAR_DIR", tmp_path)
    run(capsys)
    first = (tmp_path / "demo_password").read_text().strip()
    out = run(capsys, "--new-password", "--port", "9000")
    second = (tmp_path / "demo_password").read_text().strip()
    assert second != first and second in out and "http://127.0.0.1:9000/" in out
    assert get_user_model().objects.get(username="demo").check_password(second)


def test_apps_extend_it_with_a_seed_module(db, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "VAR_DIR", tmp_path)
    calls = []
    module = types.ModuleType("llmops.runs.seed")

    def seed_demo(*, user, workspace):
        calls.append((user.username, workspace.name))
        return "demo runs: none yet"

    module.seed_demo = seed_demo
    monkeypatch.setitem(sys.modules, "llmops.runs.seed", module)
    from llmops.accounts.management.commands import seed_demo as command

    # As if llmops/runs/seed.py existed.
    monkeypatch.setattr(command, "module_has_submodule", lambda mod, name: mod.__name__ == "llmops.runs")
    out = run(capsys)
    assert calls == [("demo", "Demo workspace")]
    assert "demo runs: none yet" in out
