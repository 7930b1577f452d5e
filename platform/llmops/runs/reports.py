"""The REPORT artifacts of a run, in one shape for the run page and the API, plus the seed's
comparison table (method, memory, training time, inference speed, accuracy drop) gathered from
every training and quantization report of the run.

Node kinds write reports in two shapes (pipelines/ml/report.py and pipelines/nodes/quantize);
`normalise` turns both into {title, summary: [{label, value}], tables, charts, notes, data}, where a
chart is {title, type, labels, series: [{name, data}]}, ready for Chart.js.
"""

from __future__ import annotations

from typing import Any

from llmops.runs.models import Artifact, NodeRun, PipelineRun
from pipelines.quant.compare import comparison_table
from pipelines.types import ArtifactType


def _chart(chart: dict[str, Any]) -> dict[str, Any]:
    if "series" in chart:
        return chart
    return {**chart, "series": [{"name": chart.get("title", ""), "data": chart.get("values", [])}]}


def normalise(metadata: dict[str, Any]) -> dict[str, Any]:
    summary = metadata.get("summary") or []
    if isinstance(summary, str):
        summary = [{"label": "Summary", "value": summary}]
    data = metadata.get("data")
    if not isinstance(data, dict):  # a flat report: its scalar fields are its data
        data = {k: v for k, v in metadata.items() if not isinstance(v, list | dict)}
    return {
        "title": metadata.get("title") or metadata.get("method_label") or "Report",
        "summary": summary,
        "tables": metadata.get("tables") or [],
        "charts": [_chart(c) for c in metadata.get("charts") or [] if isinstance(c, dict)],
        "notes": metadata.get("notes") or [],
        "data": data,
    }


def run_reports(*, run: PipelineRun) -> list[dict[str, Any]]:
    """Every report a node of the run produced (a cached node's report included), in node order."""
    nodes = list(NodeRun.objects.filter(run=run).order_by("id"))
    ids = {n.node_id: [pk for pk in (n.outputs or {}).values() if isinstance(pk, int)] for n in nodes}
    artifacts = Artifact.objects.filter(
        pk__in=[pk for pks in ids.values() for pk in pks], type=str(ArtifactType.REPORT)
    ).in_bulk()
    reports = []
    for node in nodes:
        for pk in ids[node.node_id]:
            if pk in artifacts:
                reports.append({
                    "node": node.node_id, "kind": node.kind, "label": node.label or node.node_id,
                    "artifact": pk, **normalise(artifacts[pk].metadata or {}),
                })
    return reports


def _evaluation_of(graph: dict[str, Any], train_node: str, reports: dict[str, dict]) -> dict | None:
    """The evaluate report whose adapter input comes from this training node."""
    for edge in graph.get("edges", []):
        source, target = edge.get("from", [None, None]), edge.get("to", [None, None])
        if source[0] == train_node and target[1] == "adapter" and target[0] in reports:
            return reports[target[0]]["data"]
    return None


def _training_row(report: dict[str, Any], evaluation: dict | None) -> dict[str, Any]:
    data, training = report["data"], report["data"].get("training") or {}
    row = {
        "method": data.get("method"),
        "peak_memory_bytes": training.get("peak_memory_bytes"),
        "train_seconds": training.get("seconds"),
    }
    variants = (evaluation or {}).get("variants") or {}
    adapted, baseline = variants.get("adapter") or {}, variants.get("baseline") or {}
    for metric in ("accuracy", "perplexity"):
        row[metric] = (adapted.get("scores") or {}).get(metric)
        row[f"{metric}_before"] = (baseline.get("scores") or {}).get(metric)
    row["tokens_per_s"] = adapted.get("tokens_per_s")
    row["tokens_per_s_before"] = baseline.get("tokens_per_s")
    return row


def run_comparison(*, run: PipelineRun, reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The seed's table (method, memory, training time, inference speed, accuracy drop) when the
    run has at least two fine-tuning or quantization results: a training row takes its quality and
    speed from the evaluate node fed by its adapter."""
    by_node = {r["node"]: r for r in reports}
    rows = []
    for report in reports:
        if report["kind"] == "train.lora":
            evaluation = _evaluation_of(run.graph or {}, report["node"], by_node)
            rows.append({"label": report["label"], "report": _training_row(report, evaluation)})
        elif report["kind"] == "quantize":
            rows.append({"label": report["label"], "report": report["data"]})
    if len(rows) < 2:
        return None
    table = comparison_table(rows)
    if len(table["rows"]) < 2:
        return None
    table["charts"] = [_chart(c) for c in table["charts"]]
    return table
