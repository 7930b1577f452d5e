"""``llmops manage ...``: Django's management commands, e.g. ``llmops manage createsuperuser``."""

from __future__ import annotations

PASSTHROUGH = True  # every argument goes to Django, --help included


def add_parser(subparsers) -> None:
    subparsers.add_parser(
        "manage",
        help="run a Django management command (llmops manage help lists them)",
        add_help=False,
    )


def passthrough(argv: list[str]) -> int:
    from llmops.cli.common import load_settings

    load_settings()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["llmops manage", *argv])
    return 0
