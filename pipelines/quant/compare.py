"""The comparison report: a run's reports gathered into the seed's table (pure Python).

| Method | Memory | Training time | Inference speed | Accuracy drop |

Each report (REPORT artifact metadata) gives one row. Keys are looked up by a few aliases so
that training, quantization and evaluation reports can all contribute:

- memory: ``peak_memory_bytes`` / ``memory_bytes`` / ``bytes_after`` (a quantized model's size);
- training time: ``train_seconds`` / ``train_time_s`` (0 for post-training quantization);
- inference speed: ``tokens_per_s_after`` / ``tokens_per_s``, relative to the unquantized
  model (``tokens_per_s_before``) or else to the reference row;
- accuracy drop: from ``accuracy`` when reports have it, else from perplexity
  (``perplexity_after`` / ``perplexity``), as the relative increase over the reference.

The reference row is full fine-tuning when present (the seed's 100% / 1x / 0% row); rows with
their own "before" numbers (a quantize report) are compared with their own original model.
"""

from __future__ import annotations

from typing import Any

COLUMNS = ["Method", "Memory", "Training time", "Inference speed", "Accuracy drop"]
# The seed's table (a 7B model on a GPU), shown next to the measured one.
SEED_TABLE = [
    {
        "method": "Full FT",
        "memory": "84 GB",
        "training_time": "100%",
        "inference_speed": "1x",
        "accuracy_drop": "0%",
    },
    {
        "method": "LoRA",
        "memory": "14 GB",
        "training_time": "60%",
        "inference_speed": "1x",
        "accuracy_drop": "<2%",
    },
    {
        "method": "QLoRA",
        "memory": "3.6 GB",
        "training_time": "65%",
        "inference_speed": "0.9x",
        "accuracy_drop": "<3%",
    },
    {
        "method": "1-bit",
        "memory": "2.1 GB",
        "training_time": "40%",
        "inference_speed": "2x",
        "accuracy_drop": "<5%",
    },
]
FAMILY_LABELS = {"full": "Full FT", "lora": "LoRA", "qlora": "QLoRA", "ternary_b158": "1-bit"}
ALIASES = {
    "memory": ("peak_memory_bytes", "memory_bytes", "bytes_after"),
    "train": ("train_seconds", "train_time_s", "training_seconds"),
    "speed": ("tokens_per_s_after", "tokens_per_s", "generation_tokens_per_s"),
    "speed_base": ("tokens_per_s_before", "tokens_per_s_base"),
    "ppl": ("perplexity_after", "perplexity", "eval_perplexity"),
    "ppl_base": ("perplexity_before", "perplexity_base", "baseline_perplexity"),
    "acc": ("accuracy_after", "accuracy"),
    "acc_base": ("accuracy_before", "accuracy_base", "baseline_accuracy"),
}


def _first(report: dict[str, Any], what: str) -> float | None:
    for key in ALIASES[what]:
        value = report.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _label(report: dict[str, Any], label: str | None) -> str:
    method = str(report.get("method", ""))
    family = FAMILY_LABELS.get(method)
    if label and family and family.lower() not in label.lower():
        return f"{family} — {label}"
    return label or family or report.get("method_label") or method or "?"


def _row(report: dict[str, Any], label: str | None) -> dict[str, Any]:
    return {
        "method": _label(report, label),
        "family": report.get("method"),
        "memory_bytes": _first(report, "memory"),
        "train_seconds": _first(report, "train"),
        "tokens_per_s": _first(report, "speed"),
        "tokens_per_s_base": _first(report, "speed_base"),
        "perplexity": _first(report, "ppl"),
        "perplexity_base": _first(report, "ppl_base"),
        "accuracy": _first(report, "acc"),
        "accuracy_base": _first(report, "acc_base"),
    }


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def comparison_table(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """``reports``: ``{"label": node label, "report": REPORT metadata}`` (or bare metadata)."""
    rows = [_row(r.get("report", r), r.get("label") if "report" in r else None) for r in reports]
    rows = [
        r for r in rows if any(r[k] is not None for k in ("memory_bytes", "train_seconds", "tokens_per_s"))
    ]
    ref = next((r for r in rows if r["family"] == "full"), None)
    slowest_train = max((r["train_seconds"] for r in rows if r["train_seconds"]), default=None)
    use_accuracy = any(r["accuracy"] is not None for r in rows)
    for row in rows:
        base_speed = row["tokens_per_s_base"] or (ref or {}).get("tokens_per_s")
        row["inference_speed_x"] = _round(_ratio(row["tokens_per_s"], base_speed), 3)
        train_ref = (ref or {}).get("train_seconds") or slowest_train
        row["training_time_pct"] = _round(_pct(row["train_seconds"], train_ref), 1)
        row["accuracy_drop_pct"] = _round(_drop(row, ref, use_accuracy), 2)
        row["memory"] = human_bytes(row["memory_bytes"])
    return {
        "columns": COLUMNS,
        "rows": rows,
        "reference": ref["method"] if ref else None,
        "accuracy_metric": "accuracy" if use_accuracy else "perplexity",
        "seed_table": SEED_TABLE,
        "charts": _charts(rows),
        "notes": [
            "Training time is relative to full fine-tuning when the run has it, else to the longest "
            "training.",
            "Accuracy drop: relative fall in accuracy, or relative rise in perplexity, against full "
            "fine-tuning when present, else against each row's own original model.",
        ],
    }


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference * 100


def _drop(row: dict[str, Any], ref: dict[str, Any] | None, use_accuracy: bool) -> float | None:
    if use_accuracy:
        base = (ref or {}).get("accuracy") if ref else row["accuracy_base"]
        if row["accuracy"] is None or not base:
            return None
        return (base - row["accuracy"]) / base * 100
    base = (ref or {}).get("perplexity") if ref else row["perplexity_base"]
    if row["perplexity"] is None or not base:
        return None
    return (row["perplexity"] - base) / base * 100


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _charts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = [r["method"] for r in rows]
    series = [
        (
            "Memory (MB)",
            [None if r["memory_bytes"] is None else round(r["memory_bytes"] / 1024**2, 3) for r in rows],
        ),
        ("Training time (%)", [r["training_time_pct"] for r in rows]),
        ("Inference speed (x)", [r["inference_speed_x"] for r in rows]),
        ("Accuracy drop (%)", [r["accuracy_drop_pct"] for r in rows]),
    ]
    return [{"title": title, "type": "bar", "labels": labels, "values": values} for title, values in series]


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown, the way the seed prints it."""

    def cell(value: Any, fmt: str) -> str:
        return "—" if value is None else fmt.format(value)

    lines = ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"])]
    for r in table["rows"]:
        lines.append(
            f"| {r['method']} | {r['memory']} | {cell(r['training_time_pct'], '{:.0f}%')} | "
            f"{cell(r['inference_speed_x'], '{:.2f}x')} | {cell(r['accuracy_drop_pct'], '{:+.1f}%')} |"
        )
    return "\n".join(lines)
