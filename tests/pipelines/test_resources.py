"""The memory pre-flight: sizes parsed from hub ids and the estimate formula's orders of magnitude."""

from __future__ import annotations

import pytest

from pipelines.nodes.source_model.spec import DEMO_MODEL_FACTS, SourceModelParams, model_facts
from pipelines.registry import get_spec
from pipelines.resources import (
    DEVICE_PROFILES,
    GiB,
    UpstreamMeta,
    facts_from_size,
    parse_model_size,
    resolve_device,
)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("meta-llama/Llama-2-7b-hf", 7e9),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.1e9),
        ("facebook/opt-350m", 350e6),
        ("mistralai/Mixtral-8x7B-v0.1", 56e9),
        ("meta-llama/Llama-3.1-8B-Instruct", 8e9),
        ("Qwen/Qwen2.5-0.5B", 0.5e9),
        ("HuggingFaceTB/SmolLM-135M", 135e6),
        ("gpt2", None),
        ("/models/my-llama", None),
        ("bert-base-uncased", None),
        ("org/model-v2-4bit", None),
    ],
)
def test_parse_model_size(name, params):
    assert parse_model_size(name) == (int(params) if params else None)


def test_source_model_facts():
    assert model_facts(SourceModelParams(model="demo")) == DEMO_MODEL_FACTS
    assert model_facts(SourceModelParams(model="gpt2")) is None  # unknown: no warning, no guess
    big = model_facts(SourceModelParams(model="meta-llama/Llama-2-7b-hf", dtype="float32"))
    assert (big.hidden, big.layers, big.bits) == (4096, 32, 32.0)


def meta(facts) -> dict:
    return {"model": [UpstreamMeta(node="m", kind="source.model", port="model", model=facts)]}


def train_estimate(facts, device=None, **values) -> int:
    spec = get_spec("train.lora")
    return spec.estimate(spec.params.model_validate(values), meta(facts), device).bytes


def test_seed_memory_comparison_for_7b():
    """The seed's table for a 7B model: full ~84 GB+, LoRA ~14 GB base, QLoRA ~3.6 GB base."""
    llama = facts_from_size("llama-7b", 7_000_000_000)
    small_batch = {"batch_size": 1, "max_seq_length": 256}
    full = train_estimate(llama, method="full", **small_batch)
    lora = train_estimate(llama, method="lora", **small_batch)
    qlora = train_estimate(llama, method="qlora", **small_batch)
    assert 84 * GiB < full < 140 * GiB
    assert 13 * GiB < lora < 20 * GiB
    assert 3.5 * GiB < qlora < 7 * GiB
    assert train_estimate(llama, method="qlora", double_quant=False, **small_batch) > qlora


def test_estimate_grows_with_batch_and_sequence_and_shrinks_with_checkpointing():
    llama = facts_from_size("llama-7b", 7_000_000_000)
    base = train_estimate(llama, method="qlora", batch_size=4, max_seq_length=512)
    assert train_estimate(llama, method="qlora", batch_size=8, max_seq_length=512) > base
    assert train_estimate(llama, method="qlora", batch_size=4, max_seq_length=1024) > base
    assert (
        train_estimate(llama, method="qlora", batch_size=4, max_seq_length=512, gradient_checkpointing=True)
        < base
    )
    assert train_estimate(llama, method="lora", r=64) > train_estimate(llama, method="lora", r=8)


def test_quantized_models_are_smaller_downstream():
    quantize = get_spec("quantize")
    llama = facts_from_size("llama-7b", 7_000_000_000)
    bits = {
        method: quantize.facts(quantize.params.model_validate({"method": method}), meta(llama))["model"].bits
        for method in ("int8_symmetric", "bnb_nf4", "ternary_b158")
    }
    assert bits == {"int8_symmetric": 8.0, "bnb_nf4": pytest.approx(4.127), "ternary_b158": 2.0}
    evaluate = get_spec("evaluate")
    params = evaluate.params.model_validate({})
    int8 = llama.with_bits(8.0, "int8_symmetric")
    assert evaluate.estimate(params, meta(int8)).bytes < evaluate.estimate(params, meta(llama)).bytes


def test_devices():
    assert resolve_device(None) is None
    assert resolve_device("a100-80gb").memory_bytes == 80 * GiB
    assert resolve_device(DEVICE_PROFILES["cpu-16gb"]).kind == "cpu"
    with pytest.raises(KeyError):
        resolve_device("abacus")
