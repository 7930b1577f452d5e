"""evaluate: baseline against adapter, perplexity, ROUGE/BLEU, efficiency and the report."""

from __future__ import annotations

import pytest

from pipelines.context import ArtifactRef, NodeFailure
from pipelines.ml.evaluation import evaluate
from pipelines.nodes.evaluate.spec import EvaluateParams
from pipelines.types import ArtifactType


def adapter_ref(output) -> ArtifactRef:
    return ArtifactRef(ArtifactType.ADAPTER, output.path, output.metadata)


def test_adapter_beats_the_baseline_on_a_task_the_base_cannot_solve(
    keyword_training, tiny_model_dir, make_ctx, ml
):
    ctx = make_ctx()
    params = EvaluateParams(metrics=["accuracy", "perplexity"], price_per_device_hour=2.0)
    outputs = evaluate(
        ctx,
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=keyword_training["dataset"],
        adapter_ref=adapter_ref(keyword_training["outputs"]["adapter"]),
        params=params,
    )
    report = outputs["report"].metadata
    comparison = report["data"]["comparison"]
    baseline, adapted = comparison["accuracy"]["baseline"], comparison["accuracy"]["adapter"]
    assert baseline <= 0.6  # two balanced labels: a model that cannot read the keyword is at chance
    assert adapted >= baseline + 0.25 and comparison["accuracy"]["better"]
    assert comparison["perplexity"]["adapter"] < comparison["perplexity"]["baseline"]
    labels = [row["label"] for row in report["summary"]]
    assert labels[:3] == ["Baseline accuracy", "Adapter accuracy", "Improvement"]
    assert report["notes"][0] == (
        f"Baseline accuracy: {baseline:.4f}\nAdapter accuracy:  {adapted:.4f}\n"
        f"Improvement:      {adapted - baseline:.4f}"
    )
    variants = report["data"]["variants"]
    assert variants["adapter"]["energy_source"].startswith("estimate")
    assert variants["adapter"]["cost"] == pytest.approx(variants["adapter"]["seconds"] / 3600 * 2.0, abs=2e-6)
    assert report["data"]["training"]["steps"] == 80  # the training's efficiency comes along
    assert [t["title"] for t in report["tables"]] == ["Quality", "Efficiency"]
    assert report["tables"][1]["rows"][0][0] == "training"
    assert {c["title"] for c in report["charts"]} == {
        "Quality (higher is better)",
        "Perplexity (lower is better)",
    }
    assert (ctx.workdir / "report.json").is_file()


def test_generation_metrics_on_an_instruction_dataset(tmp_path, tiny_model_dir, make_ctx, ml):
    rows = [{"instruction": "Name the platform.", "input": "", "output": "The platform runs pipelines."}] * 6
    dataset = ml.dataset_ref(tmp_path / "data", rows, "instruction", validation=0.5)
    outputs = evaluate(
        make_ctx(),
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        adapter_ref=None,
        params=EvaluateParams(metrics=["rouge", "bleu", "perplexity", "accuracy"], max_new_tokens=8),
    )
    report = outputs["report"].metadata
    scores = report["data"]["variants"]["model"]["scores"]
    assert {"rouge1", "rouge2", "rougeL", "bleu", "perplexity"} <= scores.keys()
    assert 0.0 <= scores["rouge1"] <= 1.0 and 0.0 <= scores["bleu"] <= 100.0 and scores["perplexity"] > 1.0
    assert any("accuracy needs a labelled" in note for note in report["notes"])
    assert report["data"]["samples"][0]["expected"] == "The platform runs pipelines."
    assert isinstance(report["data"]["samples"][0]["model"], str)


def test_no_held_out_rows_names_the_split(tmp_path, tiny_model_dir, make_ctx, ml):
    dataset = ml.dataset_ref(tmp_path / "data", [{"text": "one two three"}] * 3, "text", validation=0.0)
    with pytest.raises(NodeFailure, match="split: the dataset has no held-out rows"):
        evaluate(
            make_ctx(),
            model_ref=ml.model_ref(tiny_model_dir),
            dataset_ref=dataset,
            adapter_ref=None,
            params=EvaluateParams(),
        )
