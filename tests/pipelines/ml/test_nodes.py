"""The source.model and source.dataset node implementations, through a recording context."""

from __future__ import annotations

import json

import pytest

from pipelines.context import NodeFailure
from pipelines.nodes.source_dataset.run import run as source_dataset
from pipelines.nodes.source_dataset.spec import SourceDatasetParams
from pipelines.nodes.source_model.run import run as source_model
from pipelines.nodes.source_model.spec import SourceModelParams
from pipelines.types import ArtifactType


def test_source_dataset_keeps_good_rows_logs_bad_ones_and_splits(keyword_training):
    meta = keyword_training["dataset"].metadata
    assert (meta["format"], meta["rows"], meta["labels"]) == ("classification", 48, ["alpha", "beta"])
    assert (meta["train_rows"], meta["validation_rows"]) == (36, 12)
    assert meta["name"] == "keywords" and meta["dataset_id"] == 7


def test_source_dataset_reports_row_errors(tmp_path, make_ctx):
    upload = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    upload.write_text(
        "\n".join([json.dumps(good), "{oops", json.dumps({"messages": "no"}), json.dumps(good)])
    )
    ctx = make_ctx(resources={("dataset", 3): {"path": str(upload), "filename": "chat.jsonl", "name": "c"}})
    out = source_dataset(ctx, {}, SourceDatasetParams(dataset=3, validation_split=0.5))["dataset"]
    assert out.type == ArtifactType.DATASET and out.metadata["rows"] == 2
    assert [e["line"] for e in out.metadata["errors"]] == [2, 3]
    assert "2 rows skipped: line 2: not valid JSON" in ctx.log_text()
    assert (out.path / "train.jsonl").is_file() and (out.path / "validation.jsonl").is_file()


def test_source_dataset_without_usable_rows_fails_naming_the_field(tmp_path, make_ctx):
    upload = tmp_path / "bad.jsonl"
    upload.write_text("{nope\n[1, 2]\n")
    ctx = make_ctx(resources={("dataset", 3): {"path": str(upload), "filename": "bad.jsonl"}})
    with pytest.raises(NodeFailure, match="dataset: no usable rows .* line 1: not valid JSON"):
        source_dataset(ctx, {}, SourceDatasetParams(dataset=3))


def test_foreign_dataset_is_a_node_failure(make_ctx):
    with pytest.raises(NodeFailure, match="no dataset 99"):
        source_dataset(make_ctx(), {}, SourceDatasetParams(dataset=99))


def test_source_model_reports_a_local_folder(tiny_model_dir, make_ctx):
    ref = str(tiny_model_dir)
    ctx = make_ctx(resources={("model", ref): {"source": "local", "path": ref, "name": "tiny"}})
    out = source_model(ctx, {}, SourceModelParams(model=ref))["model"]
    meta = out.metadata
    assert out.type == ArtifactType.MODEL and out.path is None  # the folder is not copied
    assert (meta["architecture"], meta["precision"], meta["quantization"]) == (
        "LlamaForCausalLM",
        "float32",
        None,
    )
    assert (
        meta["model_path"] == ref and meta["parameters"] > 100_000 and meta["max_position_embeddings"] == 256
    )
    assert "LlamaForCausalLM" in ctx.events[-1]["message"]


def test_source_model_builds_the_demo_model_when_missing(tmp_path, make_ctx):
    folder = tmp_path / "models" / "demo"
    ctx = make_ctx(resources={("model", "demo"): {"source": "demo", "path": str(folder), "demo_steps": 2}})
    meta = source_model(ctx, {}, SourceModelParams(model="demo"))["model"].metadata
    assert (folder / "demo.json").is_file() and "building it now" in ctx.log_text()
    assert meta["source"] == "demo" and meta["parameters"] == 1_574_016 and meta["has_chat_template"]


def test_uncached_hub_model_without_internet_fails_clearly(tmp_path, make_ctx, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ctx = make_ctx(
        resources={("model", "org/missing-model"): {"source": "hub", "hub_id": "org/missing-model"}}
    )
    with pytest.raises(NodeFailure, match="not in this worker's cache and the worker has no internet"):
        source_model(ctx, {}, SourceModelParams(model="org/missing-model"))


def test_remote_code_needs_an_administrator(tiny_model_dir, make_ctx):
    ref = str(tiny_model_dir)
    ctx = make_ctx(
        resources={("model", ref): {"source": "local", "path": ref, "trust_remote_code_allowed": False}}
    )
    with pytest.raises(NodeFailure, match="trust_remote_code: .*administrator"):
        source_model(ctx, {}, SourceModelParams(model=ref, trust_remote_code=True))
