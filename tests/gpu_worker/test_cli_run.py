"""`llmops run GRAPH.json` through the real engine and the shared worker."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _args(path, **kwargs):
    defaults = {"user": "alice", "name": None, "force": False, "timeout": 60, "no_start": False}
    return argparse.Namespace(graph=path, **{**defaults, **kwargs})


def _cli(path, capsys, **kwargs) -> tuple[int, str]:
    from llmops.cli.common import CliError
    from llmops.cli.run_graph import run

    try:
        code = run(_args(path, **kwargs))
    except CliError as exc:
        code = exc.code
        print(f"error: {exc}")
    return code, capsys.readouterr().out


def test_run_a_graph_file(shared_worker, user, tmp_path, capsys):
    path = tmp_path / "chain.json"
    path.write_text(
        json.dumps(
            graph([("src", "test.source", {}), ("train", "test.step", {"steps": 5})], [("src", "train")])
        )
    )
    code, out = _cli(path, capsys)
    assert code == 0, out
    assert "[########################] 100% succeeded" in out and "succeeded" in out.splitlines()[-1]
    from llmops.builder.models import Pipeline

    pipeline = Pipeline.objects.get(name="chain")
    assert pipeline.versions.count() == 1
    code, out = _cli(path, capsys)  # same graph: no new version, cached outputs
    assert code == 0 and "cached" in out and pipeline.versions.count() == 1


def test_a_failing_graph_exits_non_zero(shared_worker, user, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(graph([("src", "test.source", {}), ("boom", "test.fail", {})], [("src", "boom")]))
    )
    code, out = _cli(path, capsys)
    assert code == 1 and "failed" in out


def test_refuses_without_a_worker_when_asked(shared_worker, user, tmp_path, capsys):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(graph([("g", "test.gpustep", {})], [])))
    code, out = _cli(path, capsys, no_start=True)
    assert code == 2 and "no worker is listening on queue gpu" in out


def test_bad_input_is_one_line(user, tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("[1, 2")
    code, out = _cli(path, capsys)
    assert code == 2 and "not valid JSON" in out
    code, out = _cli(tmp_path / "missing.json", capsys)
    assert code == 2 and "cannot read" in out
