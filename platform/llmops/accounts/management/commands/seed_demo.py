"""python manage.py seed_demo: the demo user ``demo``, its "Demo workspace", and demo content.

Safe to run any number of times (``make run`` runs it on every start).

Password: generated once and kept in ``var/demo_password`` (mode 600), so it survives restarts
and stays the same between runs; the user's password is set to it when they differ. Delete
that file, or pass ``--new-password``, to get a fresh one.

Extension point: any installed app may add demo content with a module ``<app>/seed.py``
defining ``seed_demo(*, user, workspace) -> str | None``. Seeders run in INSTALLED_APPS order
after the user and workspace exist, must be idempotent, and may return one line to print.
"""

from __future__ import annotations

import os
import secrets
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.module_loading import module_has_submodule

from llmops.accounts.models import Role, Workspace
from llmops.accounts.services import user_create, workspace_create

DEMO_USERNAME = "demo"
DEMO_WORKSPACE = "Demo workspace"


def password_path():
    return settings.VAR_DIR / "demo_password"


def demo_password(*, renew: bool = False) -> str:
    """The stored demo password, or a new one written to var/demo_password."""
    path = password_path()
    if not renew and path.exists() and path.read_text().strip():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(password + "\n")
    return password


@transaction.atomic
def demo_user_and_workspace(*, password: str):
    User = get_user_model()  # noqa: N806 - Django's convention for the user model
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_create(username=DEMO_USERNAME, password=password, workspace_name=DEMO_WORKSPACE)
    elif not user.check_password(password) or not user.is_active:
        user.set_password(password)
        user.is_active = True
        user.save(update_fields=["password", "is_active"])
    workspace = Workspace.objects.filter(
        name=DEMO_WORKSPACE, memberships__user=user, memberships__role=Role.OWNER
    ).first()
    if workspace is None:
        workspace = workspace_create(name=DEMO_WORKSPACE, owner=user)
    return user, workspace


def app_seeders() -> list:
    """``seed_demo`` of every installed app that has a ``seed`` module, in INSTALLED_APPS order."""
    seeders = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "seed"):
            seeder = getattr(import_module(f"{config.name}.seed"), "seed_demo", None)
            if seeder is not None:
                seeders.append(seeder)
    return seeders


class Command(BaseCommand):
    help = "Create (or refresh) the demo user, its workspace and demo content; print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Host shown in the URL.")
        parser.add_argument("--port", default=None, help="Port shown in the URL (default: $PORT or 8000).")
        parser.add_argument("--new-password", action="store_true", help="Generate a new demo password.")

    def handle(self, *args, host: str, port: str | None, new_password: bool, **options):
        port = port or os.environ.get("PORT") or "8000"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise CommandError(f"PORT: invalid value {port!r} (expected a number from 1 to 65535)")
        password = demo_password(renew=new_password)
        user, workspace = demo_user_and_workspace(password=password)
        notes = [note for seeder in app_seeders() if (note := seeder(user=user, workspace=workspace))]
        self._print_block(url=f"http://{host}:{port}/", password=password, notes=notes)

    def _print_block(self, *, url: str, password: str, notes: list[str]) -> None:
        lines = [
            "LLMOps demo is ready",
            "",
            f"  Open       {url}",
            f"  User name  {DEMO_USERNAME}",
            f"  Password   {password}",
            "",
            f"The password is kept in {password_path()}; seed_demo --new-password makes a new one.",
            *notes,
        ]
        width = max(len(line) for line in lines) + 2
        bar = "─" * width
        self.stdout.write(f"┌{bar}┐")
        for line in lines:
            self.stdout.write(f"│ {line.ljust(width - 1)}│")
        self.stdout.write(f"└{bar}┘")
