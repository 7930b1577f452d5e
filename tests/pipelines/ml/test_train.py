"""train.lora on tiny real models: the loss falls, the adapter reloads, training resumes."""

from __future__ import annotations

import json

import pytest

from pipelines.context import ArtifactRef, NodeCancelled, NodeFailure
from pipelines.ml.train import train
from pipelines.types import ArtifactType


def test_lora_lowers_the_loss_and_reports_every_step(keyword_training):
    ctx, outputs = keyword_training["ctx"], keyword_training["outputs"]
    report = outputs["report"].metadata
    data = report["data"]
    assert data["final_loss"] < data["first_loss"] * 0.5
    assert [step for step, _ in ctx.metrics["loss"]] == [step for step, _ in data["losses"]]
    assert data["training"]["steps"] == 80
    # q, k, v, o with r=16 on a 64-wide, 2-layer model: 2 layers x 4 x 16 x (64 + 64).
    assert data["trainable_parameters"] == 16_384
    assert "Trainable: 16,384 / " in report["notes"][0]
    assert data["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "automatic for llama" in ctx.log_text()
    progress = [e for e in ctx.events if e.get("step")]
    assert progress[-1]["done"] == progress[-1]["total"] == 80
    assert {"tokens_per_s", "peak_memory_mb", "epoch", "eta_s"} <= progress[-1].keys()
    assert report["charts"][0]["title"] == "Training loss"
    assert json.loads((ctx.workdir / "report.json").read_text())["kind"] == "train.lora"
    assert any("computes in fp32" in note for note in report["notes"])  # bf16 asked, CPU here


def test_adapter_is_peft_format_and_reloads_to_generate(keyword_training, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = keyword_training["outputs"]["adapter"]
    assert adapter.type == ArtifactType.ADAPTER
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.path.iterdir()}
    assert not (keyword_training["ctx"].workdir / "checkpoints").exists()  # cleaned after success
    assert adapter.metadata["labels"] == ["alpha", "beta"] and adapter.metadata["format"] == "peft"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    model = PeftModel.from_pretrained(base, str(adapter.path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(adapter.path)
    prompt = "Classify the text into one of: alpha, beta.\nText: the red note\nLabel:"
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer in ("alpha", "beta")


@pytest.mark.parametrize("engine_keeps", ["workdir", "checkpoint_dir"])
def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir, make_ctx, ml, engine_keeps):
    """A lost worker: the retried node finds the checkpoints (same workdir, or a checkpoint_dir
    the engine keeps across attempts) and goes on from the last one, not from zero."""
    dataset = ml.dataset_ref(tmp_path / "data", ml.keyword_rows(8), "classification", stratify="label")
    params = ml.train_params(max_steps=8, save_steps=3, logging_steps=1)
    if engine_keeps == "workdir":
        first_dir = second_dir = tmp_path / "work"
        extra = {}
        saved = first_dir / "checkpoints"
    else:
        first_dir, second_dir = tmp_path / "attempt-1", tmp_path / "attempt-2"
        extra = {"checkpoint_dir": tmp_path / "checkpoints"}
        saved = tmp_path / "checkpoints"
    first = make_ctx(first_dir, cancel_on_check=5, **extra)  # the 5th step ends the attempt
    with pytest.raises(NodeCancelled):
        train(first, model_ref=ml.model_ref(tiny_model_dir), dataset_ref=dataset, params=params)
    assert sorted(p.name for p in saved.iterdir()) == ["checkpoint-3"]

    second = make_ctx(second_dir, **extra)
    outputs = train(second, model_ref=ml.model_ref(tiny_model_dir), dataset_ref=dataset, params=params)
    assert "resuming from checkpoint-3" in second.log_text()
    steps = [e["step"] for e in second.events if e.get("step")]
    assert steps[0] == 4 and steps[-1] == 8
    assert outputs["report"].metadata["data"]["training"]["resumed_from_step"] == 3
    assert any("resumed from the checkpoint at step 3" in n for n in outputs["report"].metadata["notes"])
    assert not saved.exists()  # finished: the checkpoints are gone


def test_merge_saves_a_plain_model_that_loads_without_peft(tmp_path, tiny_model_dir, make_ctx, ml):
    from transformers import AutoModelForCausalLM

    dataset = ml.dataset_ref(tmp_path / "data", ml.keyword_rows(4), "classification")
    ctx = make_ctx()
    outputs = train(
        ctx,
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        params=ml.train_params(
            max_steps=2, merge_adapter=True, target_modules=["q_proj", "v_proj"], batch_size="auto"
        ),
    )
    merged = outputs["adapter"].path / "merged"
    assert outputs["adapter"].metadata["merged"] == "merged"
    model = AutoModelForCausalLM.from_pretrained(merged, use_safetensors=True)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert "auto batch size" in ctx.log_text()
    assert outputs["report"].metadata["data"]["target_modules"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_modules": ["q_proj", "attention_qq"]}, "target_modules: attention_qq does not exist"),
        ({"max_seq_length": 1024}, "max_seq_length: 1024 tokens is longer than the model's context of 256"),
        ({"task": "classification"}, "task: classification needs a labelled dataset"),
    ],
)
def test_bad_settings_fail_naming_the_field(tmp_path, tiny_model_dir, make_ctx, ml, overrides, field):
    dataset = ml.dataset_ref(tmp_path / "data", [{"text": "hello world"}] * 4, "text")
    with pytest.raises(NodeFailure, match=field):
        train(
            make_ctx(),
            model_ref=ml.model_ref(tiny_model_dir),
            dataset_ref=dataset,
            params=ml.train_params(max_steps=1, **overrides),
        )


def test_a_model_reference_without_weights_fails_clearly(tmp_path, make_ctx, ml):
    dataset = ml.dataset_ref(tmp_path / "data", [{"text": "hello world"}] * 4, "text")
    empty = ArtifactRef(ArtifactType.MODEL, None, {"source": "local", "model_path": str(tmp_path / "none")})
    with pytest.raises(NodeFailure, match="no weights this worker can read"):
        train(make_ctx(), model_ref=empty, dataset_ref=dataset, params=ml.train_params(max_steps=1))


def test_qlora_on_cpu_or_a_clear_fallback(tmp_path, tiny_model_dir, make_ctx, ml):
    from pipelines.ml.loading import bnb_4bit_problem

    dataset = ml.dataset_ref(tmp_path / "data", ml.keyword_rows(8), "classification")
    ctx = make_ctx()
    outputs = train(
        ctx,
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        params=ml.train_params(method="qlora", max_steps=6, logging_steps=1),
    )
    data = outputs["report"].metadata["data"]
    problem = bnb_4bit_problem("cpu")
    if problem:
        assert data["method"] == "lora" and "falling back to LoRA" in ctx.log_text()
        pytest.skip(f"bitsandbytes 4-bit does not run on this CPU (fallback checked): {problem}")
    assert data["method"] == "qlora" and outputs["adapter"].metadata["quantization"]["quant_type"] == "nf4"
    assert data["final_loss"] < data["first_loss"]


@pytest.mark.parametrize(
    "overrides",
    [{"packing": True}, {"gradient_checkpointing": True}, {"method": "full", "learning_rate": 1e-3}],
    ids=["padding-free-packing", "gradient-checkpointing", "full-fine-tune"],
)
def test_other_training_modes_learn_and_evaluate(tmp_path, tiny_model_dir, make_ctx, ml, overrides):
    from pipelines.ml.evaluation import evaluate
    from pipelines.nodes.evaluate.spec import EvaluateParams

    dataset = ml.dataset_ref(tmp_path / "data", ml.keyword_rows(8), "classification", stratify="label")
    outputs = train(
        make_ctx(),
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        params=ml.train_params(max_steps=12, logging_steps=1, **overrides),
    )
    data = outputs["report"].metadata["data"]
    assert data["final_loss"] < data["first_loss"]
    adapter = ArtifactRef(ArtifactType.ADAPTER, outputs["adapter"].path, outputs["adapter"].metadata)
    report = evaluate(
        make_ctx(),
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        adapter_ref=adapter,
        params=EvaluateParams(metrics=["perplexity"]),
    )["report"].metadata
    assert set(report["data"]["variants"]) == {"baseline", "adapter"}
    if overrides.get("method") == "full":
        assert outputs["adapter"].metadata["format"] == "full_model"
        assert data["trainable_parameters"] == data["total_parameters"]
