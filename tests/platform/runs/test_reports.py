"""Reports of a run gathered into one shape, and the seed's comparison table across methods."""

from __future__ import annotations

import pytest

from llmops.runs import reports
from llmops.runs.models import Artifact, NodeRun, PipelineRun


def _graph():
    def edge(a, pa, b, pb):
        return {"from": [a, pa], "to": [b, pb]}

    return {
        "version": 1,
        "nodes": [],
        "edges": [
            edge("lora", "adapter", "eval_lora", "adapter"),
            edge("qlora", "adapter", "eval_qlora", "adapter"),
        ],
    }


def _train(method, memory, seconds):
    return {
        "kind": "train.lora",
        "title": "Fine-tuning report",
        "summary": [{"label": "Method", "value": method}],
        "charts": [
            {
                "title": "Training loss",
                "type": "line",
                "labels": [1, 2],
                "series": [{"name": "loss", "data": [2.0, 1.0]}],
            }
        ],
        "data": {"method": method, "training": {"peak_memory_bytes": memory, "seconds": seconds}},
    }


def _eval(base, adapted):
    return {
        "kind": "evaluate",
        "title": "Evaluation report",
        "summary": [],
        "data": {
            "variants": {
                "baseline": {"scores": {"accuracy": base}, "tokens_per_s": 100.0},
                "adapter": {"scores": {"accuracy": adapted}, "tokens_per_s": 90.0},
            }
        },
    }


QUANT = {
    "method": "ternary_b158",
    "summary": "1.7 bits per weight",
    "bytes_after": 1_000_000,
    "perplexity_before": 10.0,
    "perplexity_after": 11.0,
    "tokens_per_s_before": 50.0,
    "tokens_per_s_after": 60.0,
    "charts": [{"title": "Size (MB)", "type": "bar", "labels": ["before", "after"], "values": [4.0, 1.0]}],
}


@pytest.fixture
def run(chain_pipeline, user):
    version = chain_pipeline.versions.get()
    run = PipelineRun.objects.create(
        workspace=chain_pipeline.workspace,
        pipeline=chain_pipeline,
        version=version,
        graph=_graph(),
        created_by=user,
        status="succeeded",
    )
    outputs = {
        "lora": _train("lora", 8_000_000, 10.0),
        "qlora": _train("qlora", 3_000_000, 12.0),
        "eval_lora": _eval(0.5, 0.9),
        "eval_qlora": _eval(0.5, 0.85),
        "ternary": QUANT,
    }
    kinds = {
        "lora": "train.lora",
        "qlora": "train.lora",
        "eval_lora": "evaluate",
        "eval_qlora": "evaluate",
        "ternary": "quantize",
    }
    for node_id, metadata in outputs.items():
        node = NodeRun.objects.create(
            run=run, node_id=node_id, kind=kinds[node_id], queue="gpu", status="succeeded"
        )
        artifact = Artifact.objects.create(
            workspace=run.workspace,
            key=f"k-{node_id}",
            type="Report",
            metadata=metadata,
            node_run=node,
            port="report",
        )
        node.outputs = {"report": artifact.pk}
        node.save(update_fields=["outputs"])
    return run


@pytest.mark.django_db
def test_reports_are_normalised_in_node_order(run):
    found = reports.run_reports(run=run)
    assert [r["node"] for r in found] == ["lora", "qlora", "eval_lora", "eval_qlora", "ternary"]
    ternary = found[-1]
    assert ternary["summary"] == [{"label": "Summary", "value": "1.7 bits per weight"}]
    assert ternary["charts"][0]["series"][0]["data"] == [4.0, 1.0]  # "values" became a series
    assert ternary["data"]["bytes_after"] == 1_000_000


@pytest.mark.django_db
def test_comparison_table_takes_quality_from_the_evaluation_of_each_adapter(run):
    table = reports.run_comparison(run=run, reports=reports.run_reports(run=run))
    rows = {row["family"]: row for row in table["rows"]}
    assert set(rows) == {"lora", "qlora", "ternary_b158"}
    assert rows["qlora"]["memory_bytes"] < rows["lora"]["memory_bytes"]
    assert rows["lora"]["accuracy_drop_pct"] == pytest.approx(-80.0)  # 0.5 -> 0.9 is a gain, not a drop
    assert rows["lora"]["training_time_pct"] == pytest.approx(10 / 12 * 100, abs=0.1)
    assert rows["ternary_b158"]["inference_speed_x"] == pytest.approx(1.2)


@pytest.mark.django_db
def test_report_api_and_page(run, client):
    client.force_login(run.created_by)
    body = client.get(f"/api/v1/runs/{run.pk}/report").json()
    assert len(body["reports"]) == 5 and len(body["comparison"]["rows"]) == 3
    page = client.get(f"/runs/{run.pk}/reports/").content.decode()
    assert "Comparison of methods" in page and "Fine-tuning report" in page
