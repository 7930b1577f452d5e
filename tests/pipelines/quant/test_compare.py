"""The comparison report: a run's reports gathered into the seed's table (pure Python)."""

from __future__ import annotations

import pytest

from pipelines.quant.compare import SEED_TABLE, comparison_table, markdown

FULL = {
    "method": "full",
    "peak_memory_bytes": 84 * 2**30,
    "train_seconds": 1000.0,
    "tokens_per_s": 20.0,
    "perplexity": 10.0,
}
LORA = {
    "method": "lora",
    "peak_memory_bytes": 14 * 2**30,
    "train_seconds": 600.0,
    "tokens_per_s": 20.0,
    "perplexity": 10.15,
}
QLORA = {
    "method": "qlora",
    "peak_memory_bytes": 3.6 * 2**30,
    "train_seconds": 650.0,
    "tokens_per_s": 18.0,
    "perplexity": 10.25,
}
TERNARY = {  # the keys the quantize node writes
    "kind": "quantize",
    "method": "ternary_b158",
    "method_label": "1-bit (ternary b1.58)",
    "bytes_before": 28 * 2**30,
    "bytes_after": 2.1 * 2**30,
    "train_time_s": 400.0,
    "tokens_per_s_before": 20.0,
    "tokens_per_s_after": 40.0,
    "perplexity_before": 10.0,
    "perplexity_after": 10.4,
}


def test_the_seed_table_rebuilt_from_reports():
    table = comparison_table(
        [
            {"label": "Full fine-tune", "report": FULL},
            {"label": "LoRA", "report": LORA},
            {"label": "QLoRA", "report": QLORA},
            {"label": "1-bit (ternary)", "report": TERNARY},
        ]
    )
    assert table["columns"] == ["Method", "Memory", "Training time", "Inference speed", "Accuracy drop"]
    assert table["reference"] == "Full FT — Full fine-tune"
    rows = {r["family"]: r for r in table["rows"]}
    assert rows["full"]["training_time_pct"] == 100 and rows["full"]["accuracy_drop_pct"] == 0
    assert rows["lora"]["training_time_pct"] == 60 and rows["lora"]["accuracy_drop_pct"] == pytest.approx(1.5)
    assert rows["qlora"]["inference_speed_x"] == pytest.approx(0.9)
    assert rows["ternary_b158"]["memory"] == "2.10 GB"
    assert rows["ternary_b158"]["training_time_pct"] == 40
    assert rows["ternary_b158"]["inference_speed_x"] == 2.0  # against its own unquantized model
    assert rows["ternary_b158"]["accuracy_drop_pct"] == pytest.approx(4.0)
    text = markdown(table)
    assert text.splitlines()[0] == "| Method | Memory | Training time | Inference speed | Accuracy drop |"
    assert "| 1-bit — 1-bit (ternary) | 2.10 GB | 40% | 2.00x | +4.0% |" not in text  # no doubled family
    assert "| 1-bit (ternary) | 2.10 GB | 40% | 2.00x | +4.0% |" in text
    assert len(table["seed_table"]) == len(SEED_TABLE) == 4
    assert {c["title"] for c in table["charts"]} >= {"Memory (MB)", "Accuracy drop (%)"}


def test_without_full_fine_tuning_rows_compare_with_their_own_original():
    int8 = {
        **TERNARY,
        "method": "int8_symmetric",
        "method_label": "int8 (symmetric)",
        "train_time_s": 0.0,
        "bytes_after": 7.2 * 2**30,
        "perplexity_after": 10.05,
        "tokens_per_s_after": 22.0,
    }
    table = comparison_table([TERNARY, int8])
    assert table["reference"] is None and table["accuracy_metric"] == "perplexity"
    by_method = {r["family"]: r for r in table["rows"]}
    assert by_method["int8_symmetric"]["accuracy_drop_pct"] == pytest.approx(0.5)
    assert by_method["int8_symmetric"]["training_time_pct"] == 0
    assert by_method["ternary_b158"]["training_time_pct"] == 100  # the longest training


def test_accuracy_is_used_when_reports_have_it_and_empty_reports_are_left_out():
    table = comparison_table(
        [
            {**FULL, "accuracy": 0.80},
            {**LORA, "accuracy": 0.78},
            {"note": "a report without numbers"},
        ]
    )
    assert table["accuracy_metric"] == "accuracy" and len(table["rows"]) == 2
    assert table["rows"][1]["accuracy_drop_pct"] == pytest.approx(2.5)
