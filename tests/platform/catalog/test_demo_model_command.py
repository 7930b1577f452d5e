"""`llmops demo-model`: builds the demo model in a child process, then is a no-op."""

from __future__ import annotations

import argparse
import json

from llmops.cli import demo_model


def test_builds_once_then_does_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    args = argparse.Namespace(out=str(out), force=False, steps=2)
    assert demo_model.run(args) == 0
    info = json.loads((out / "demo.json").read_text())
    assert info["parameters"] == 1_574_016 and info["config"]["steps"] == 2
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in out.iterdir()
    }
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert demo_model.run(args) == 0
    assert "already built" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_the_subcommand_parses():
    parser = argparse.ArgumentParser()
    demo_model.add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo-model", "--force", "--out", "/tmp/x"])
    assert args.force and args.out == "/tmp/x" and args.func is demo_model.run
