"""The ``llmops`` console script: one module per subcommand, each exposing ``add_parser``.

To add a subcommand, write ``llmops/cli/<name>.py`` (hyphens become underscores) with
``add_parser(subparsers)`` that sets ``func`` on its parser, and append the name to
SUBCOMMANDS. ``func(args) -> int`` may raise ``CliError``: it becomes one ``error:`` line.
A module with ``PASSTHROUGH = True`` receives the raw arguments instead (``llmops manage``).

This package must never import torch or ``gpu_worker`` (import-linter): workers are
subprocesses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from llmops.cli.common import CliError

SUBCOMMANDS = ["up", "worker", "run", "demo-model", "manage"]
# Subcommands whose module name differs from the command (`llmops run` lives in run_graph.py).
MODULES = {"run": "run_graph"}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"llmops.cli.{MODULES.get(name, name.replace('-', '_'))}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmops",
        description="No-code LLMOps platform: run it on this machine, or add workers to a cluster.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        _module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS and getattr(_module(argv[0]), "PASSTHROUGH", False):
        return _guarded(_module(argv[0]).passthrough, argv[1:])
    args = build_parser().parse_args(argv)
    return _guarded(args.func, args)


def _guarded(func, arg) -> int:
    """Expected failures are one line on stderr, never a traceback."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        return int(func(arg) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
