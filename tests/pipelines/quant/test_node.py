"""The quantize node's run() with a real (recording) NodeContext, on a tiny real model."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipelines.context import ArtifactRef, NodeCancelled, NodeFailure
from pipelines.nodes.quantize.run import run
from pipelines.nodes.quantize.spec import QuantizeParams
from pipelines.types import ArtifactType


@dataclass
class RecordingContext:
    """A complete NodeContext that keeps every event, for assertions."""

    workdir: Path
    node_id: str = "quantize"
    run_id: int = 1
    device: str = "cpu"
    workspace_id: int = 1
    cancel: bool = False
    events: list[tuple[str, Any]] = field(default_factory=list)

    def progress(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        self.events.append(("progress", (done, total, message, metrics)))

    def log(self, message: str, level: str = "info") -> None:
        self.events.append(("log", (level, message)))

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.events.append(("metric", (name, value, step)))

    def cancelled(self) -> bool:
        return self.cancel

    def check_cancelled(self) -> None:
        if self.cancel:
            raise NodeCancelled()

    def resource(self, kind: str, ref: Any) -> Any:
        raise NodeFailure(f"no {kind} {ref!r} in this test workspace")

    def of(self, kind: str) -> list[Any]:
        return [payload for k, payload in self.events if k == kind]


def _dataset(folder: Path, lines: list[str]) -> ArtifactRef:
    from pipelines.ml.datasets import ParsedDataset, write_dataset

    rows = [{"text": line} for line in lines]
    cut = max(1, len(rows) // 5) if rows else 0
    parsed = ParsedDataset("text", rows)
    write_dataset(folder, parsed=parsed, train=rows[cut:], validation=rows[:cut])
    return ArtifactRef(ArtifactType.DATASET, folder, {"format": "text"})


@pytest.fixture
def corpus_dataset(tmp_path):
    from pipelines.ml.demo import corpus_lines

    return _dataset(tmp_path / "data", corpus_lines()[:120])


def _inputs(model_dir: Path, dataset: ArtifactRef | None = None) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "model": ArtifactRef(ArtifactType.MODEL, model_dir, {"name": "tiny", "source": "demo"})
    }
    if dataset is not None:
        inputs["dataset"] = dataset
    return inputs


def test_int8_run_produces_the_model_and_the_report(tiny_model_dir, tiny_tokenizer, corpus_dataset, tmp_path):
    ctx = RecordingContext(tmp_path / "work")
    ctx.workdir.mkdir()
    params = QuantizeParams(method="int8_symmetric", skip_modules=[], calibration_samples=32)
    outputs = run(ctx, _inputs(tiny_model_dir, corpus_dataset), params)

    model, report = outputs["model"], outputs["report"]
    assert model.type == ArtifactType.MODEL and report.type == ArtifactType.REPORT
    folder = Path(model.path)
    assert folder.is_relative_to(ctx.workdir)
    for name in ("model.safetensors", "quantization_config.json", "config.json", "tokenizer.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "demo.json").exists()
    assert model.metadata["precision"] == "int8" and model.metadata["method"] == "int8_symmetric"
    assert "source" not in model.metadata  # never points back at the unquantized weights

    r = report.metadata
    assert r["bytes_after"] < 0.3 * r["bytes_before"] and r["compression_ratio"] > 3.3
    assert 8.0 < r["bits_per_weight"] < 8.6  # int8 + one float32 scale per row of 64-128 weights
    assert abs(r["perplexity_change_pct"]) < 5
    assert r["tokens_per_s_before"] > 0 and r["tokens_per_s_after"] > 0
    assert r["reload_max_abs_diff"] == 0.0
    assert r["text"]["source"] == "connected dataset"
    assert {row["name"] for row in r["per_layer"]} >= {"model.layers.0.self_attn.q_proj", "lm_head"}
    assert all(0 < row["relative_error"] < 0.05 for row in r["per_layer"])
    assert json.loads(json.dumps(r)) == r  # JSON-safe
    assert [c["title"] for c in r["charts"]][:3] == [
        "Size (MB)",
        "Perplexity (lower is better)",
        "Generation speed (tokens/s)",
    ]

    progress = ctx.of("progress")
    assert progress[0][0] == 0 and progress[-1][0] == 100
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert {m[0] for m in ctx.of("metric")} >= {"compression_ratio", "perplexity_after"}

    from pipelines.quant.io import load_quantized

    loaded = load_quantized(folder)
    ids = tiny_tokenizer("The platform", return_tensors="pt")["input_ids"]
    generated = loaded.generate(
        ids, max_new_tokens=5, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id
    )
    assert generated.shape[1] > ids.shape[1]


def test_ternary_with_qat_reports_what_training_won_back(tiny_model_dir, tmp_path):
    ctx = RecordingContext(tmp_path / "work")
    ctx.workdir.mkdir()
    params = QuantizeParams(method="ternary_b158", qat_steps=6, qat_learning_rate=2e-3)
    r = run(ctx, _inputs(tiny_model_dir), params)["report"].metadata

    assert r["precision"] == "ternary" and r["bits_per_weight"] <= 2.0
    assert r["perplexity_after"] < r["perplexity_ptq"]  # QAT beats post-training ternarization
    assert r["train_time_s"] > 0 and r["details"]["qat"]["steps"] == 6
    assert "quantization-aware training brought it to" in r["summary"]
    assert len([m for m in ctx.of("metric") if m[0] == "qat_loss"]) == 6
    assert r["text"]["source"] == "built-in sample text"


def test_empty_calibration_data_fails_with_what_to_change(tiny_model_dir, tmp_path):
    data = tmp_path / "empty"
    data.mkdir()
    (data / "train.jsonl").write_text("")
    (data / "validation.jsonl").write_text("")
    ctx = RecordingContext(tmp_path / "work")
    with pytest.raises(NodeFailure, match="no text rows.*connect a dataset"):
        run(ctx, _inputs(tiny_model_dir, ArtifactRef(ArtifactType.DATASET, data)), QuantizeParams())


def test_an_unmeetable_budget_fails_with_the_smallest_size(tiny_model_dir, tmp_path):
    ctx = RecordingContext(tmp_path / "work")
    ctx.workdir.mkdir()
    params = QuantizeParams(method="mixed", size_budget_mb=0.01, calibration_samples=4)
    with pytest.raises(NodeFailure, match=r"Set the size budget to at least"):
        run(ctx, _inputs(tiny_model_dir), params)


def test_an_already_quantized_model_is_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "quantized"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "quantization_config.json").write_text(json.dumps({"method": "int8_symmetric"}))
    with pytest.raises(NodeFailure, match="already quantized.*original"):
        run(RecordingContext(tmp_path / "work"), _inputs(folder), QuantizeParams())


def test_a_model_without_linear_layers_fails_clearly(tiny_model_dir, tmp_path):
    """GPT-2 computes with Conv1D, not nn.Linear: with lm_head kept there is nothing to quantize."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(
        GPT2Config(vocab_size=384, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    ).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    with pytest.raises(NodeFailure, match="no linear layers to quantize"):
        run(RecordingContext(tmp_path / "work"), _inputs(folder), QuantizeParams())


def test_cancel_stops_the_node(tiny_model_dir, tmp_path):
    with pytest.raises(NodeCancelled):
        run(RecordingContext(tmp_path / "work", cancel=True), _inputs(tiny_model_dir), QuantizeParams())
