"""Each kind's params model: defaults from the seed, bounds, choices and cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.params import FieldError
from pipelines.registry import get_spec


def params(kind: str, **values):
    return get_spec(kind).params.model_validate(values)


def blamed_field(kind: str, **values) -> str:
    with pytest.raises(ValidationError) as info:
        params(kind, **values)
    err = info.value.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    return cause.field if isinstance(cause, FieldError) else str(err["loc"][0])


def test_source_documents_needs_a_collection():
    assert params("source.documents", collection=3).collection == 3
    assert blamed_field("source.documents") == "collection"
    assert blamed_field("source.documents", collection=0) == "collection"


def test_source_dataset():
    p = params("source.dataset", dataset=1)
    assert (p.format, p.validation_split, p.max_rows) == ("auto", 0.1, 0)
    assert blamed_field("source.dataset", dataset=1, validation_split=0.9) == "validation_split"
    assert blamed_field("source.dataset", dataset=1, format="xml") == "format"


@pytest.mark.parametrize("ref", ["demo", "meta-llama/Llama-2-7b-hf", "gpt2", "/models/my-llama"])
def test_source_model_accepts_demo_hub_ids_and_paths(ref):
    assert params("source.model", model=ref).model == ref


@pytest.mark.parametrize("ref", ["../etc", "/models/../etc", "a/b/c", "https://x.y/z", "", "a b"])
def test_source_model_refuses_odd_references(ref):
    assert blamed_field("source.model", model=ref) == "model"


def test_source_model_never_trusts_remote_code_by_default():
    p = params("source.model")
    assert p.model == "demo" and p.trust_remote_code is False


def test_vectorize_faiss_overlap_must_be_below_chunk_size():
    p = params("vectorize.faiss")
    assert (p.embedding_model, p.chunk_size, p.chunk_overlap, p.metric) == (
        "all-MiniLM-L6-v2",
        256,
        32,
        "cosine",
    )
    assert blamed_field("vectorize.faiss", chunk_size=100, chunk_overlap=100) == "chunk_overlap"
    assert blamed_field("vectorize.faiss", index_type="annoy") == "index_type"


def test_quantize_methods_and_budget():
    for method in (
        "int8_symmetric",
        "int8_asymmetric",
        "int8_dynamic",
        "torchao_int8_weight_only",
        "bnb_nf4",
        "bnb_fp4",
        "bnb_int8",
        "ternary_b158",
    ):
        assert params("quantize", method=method).method == method
    assert params("quantize").skip_modules == ["lm_head"]
    assert blamed_field("quantize", method="mixed") == "size_budget_mb"
    assert params("quantize", method="mixed", size_budget_mb=5).size_budget_mb == 5
    schema = get_spec("quantize").json_schema()["properties"]["method"]
    assert len(schema["x-choices"]) == 9 and "max|w| / 127" in schema["description"]


def test_train_lora_defaults_follow_the_seed():
    p = params("train.lora")
    assert (p.method, p.r, p.alpha, p.dropout, p.learning_rate) == ("lora", 16, 32, 0.05, 2e-4)
    assert (p.quant_type, p.double_quant, p.compute_dtype) == ("nf4", True, "bf16")
    assert (p.weight_decay, p.max_grad_norm, p.warmup_ratio) == (0.001, 0.3, 0.03)


def test_train_lora_qlora_means_a_4bit_base():
    assert params("train.lora", method="qlora").load_in_4bit is True
    assert params("train.lora", load_in_4bit=True).method == "qlora"
    assert params("train.lora", method="lora").load_in_4bit is False
    assert blamed_field("train.lora", method="full", load_in_4bit=True) == "load_in_4bit"


def test_train_lora_target_modules_and_batch_size():
    assert params("train.lora", target_modules="q_proj, v_proj").target_modules == ["q_proj", "v_proj"]
    assert params("train.lora", target_modules=["q_proj"]).target_modules == ["q_proj"]
    assert params("train.lora").target_modules == "auto"
    assert blamed_field("train.lora", target_modules=[]) == "target_modules"
    assert blamed_field("train.lora", target_modules=["q proj;"]) == "target_modules"
    assert params("train.lora", batch_size="auto").batch_size == "auto"
    assert params("train.lora", batch_size="8").batch_size == 8
    for field, value in (
        ("r", 0),
        ("dropout", 1.5),
        ("learning_rate", 0),
        ("optimizer", "adam"),
        ("lr_scheduler", "step"),
        ("batch_size", 0),
        ("gradient_accumulation_steps", 0),
    ):
        assert blamed_field("train.lora", **{field: value}) == field


def test_evaluate_metrics():
    assert params("evaluate").metrics == ["perplexity"]
    assert params("evaluate", metrics=["rouge", "bleu", "rouge"]).metrics == ["rouge", "bleu"]
    assert blamed_field("evaluate", metrics=[]) == "metrics"
    assert blamed_field("evaluate", metrics=["f1"]) == "metrics"
    assert blamed_field("evaluate", price_per_device_hour=-1) == "price_per_device_hour"


@pytest.mark.parametrize(
    "template",
    [
        "{context}",
        "{question}",
        "{context} {question} {other}",
        "{context.__class__} {question}",
        "{context!r} {question}",
        "{context:>10} {question}",
        "{ {context} {question}",
        "{0} {context} {question}",
    ],
)
def test_serve_rag_prompt_template_allows_only_its_two_placeholders(template):
    assert blamed_field("serve.rag", prompt_template=template) == "prompt_template"


def test_serve_rag_defaults():
    p = params("serve.rag", prompt_template="Use {{braces}}: {context}\n{question}")
    assert p.prompt_template.format(context="c", question="q") == "Use {braces}: c\nq"
    assert (p.mode, p.top_k, p.adapter_routing) == ("generate", 4, "auto")
    assert blamed_field("serve.rag", mode="chat") == "mode"
    assert blamed_field("serve.rag", temperature=3) == "temperature"


def test_publish_api_slug():
    assert params("publish.api").slug is None
    assert params("publish.api", slug="support-bot").slug == "support-bot"
    for slug in ("Support", "-x", "x-", "a_b", "a" * 51):
        assert blamed_field("publish.api", slug=slug) == "slug"
    assert params("publish.api").rate_limit_per_minute == 60
