"""``llmops demo-model [--out DIR] [--force]``: build the bundled offline demo model.

A small Llama with a tokenizer trained locally, briefly pre-trained on text shipped with the
platform (about a minute on two CPU cores), saved with ``save_pretrained`` into
LLMOPS_DEMO_MODEL_DIR (var/models/demo). A no-op when it is already there, so ``make run``
calls it every time. The builder runs in a child process (``python -m pipelines.ml.demo``):
this CLI, like the web, never imports torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from llmops.cli.common import ROOT, CliError, child_env, load_settings, say


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-model",
        help="build the bundled offline demo model (once; a no-op when it exists)",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    parser.add_argument(
        "--out", default=None, help="folder to write (default: LLMOPS_DEMO_MODEL_DIR, var/models/demo)"
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the demo model is already there"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="pre-training steps (default: LLMOPS_DEMO_STEPS, 300)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    out = Path(args.out).resolve() if args.out else Path(settings.LLMOPS_DEMO_MODEL_DIR)
    if (out / "demo.json").is_file() and not args.force:
        say(f"demo model already built at {out}")
        return 0
    steps = args.steps if args.steps is not None else settings.LLMOPS_DEMO_STEPS
    if steps < 0:
        raise CliError("--steps must be 0 or more", code=2)
    argv = [sys.executable, "-m", "pipelines.ml.demo", "--out", str(out), "--steps", str(steps)]
    if args.force:
        argv.append("--force")
    completed = subprocess.run(argv, cwd=ROOT, env=child_env(settings), check=False)
    if completed.returncode != 0:
        raise CliError(f"building the demo model failed (exit status {completed.returncode})")
    return 0
