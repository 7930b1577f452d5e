"""Each method on a tiny real Llama: quantize, save, load back, same logits, still generates."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.quant import backends, io, methods, metrics
from pipelines.quant.hooks import Hooks
from pipelines.quant.layers import BitLinear, QuantEmbedding, QuantLinear
from pipelines.quant.texts import builtin_split

SPLIT = builtin_split()


def _data(tokenizer) -> methods.Data:
    return methods.Data(tokenizer, SPLIT.train, SPLIT.held_out)


def _probe(tokenizer) -> torch.Tensor:
    return torch.tensor([metrics.token_stream(tokenizer, SPLIT.held_out, 24)])


def _round_trip(model, tokenizer, method, source, out):
    # save first: bitsandbytes repacks 4-bit weights for the CPU at the first forward pass
    io.save_quantized(model, out, method=method, source=source, extra={})
    expected = metrics.logits(model, _probe(tokenizer))
    loaded = io.load_quantized(out)
    assert torch.equal(metrics.logits(loaded, _probe(tokenizer)), expected)
    return loaded


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("int8_symmetric", {}),
        ("int8_asymmetric", {"per_channel": False}),
        ("ternary_b158", {}),
        ("int8_dynamic", {}),
        ("torchao_int8_weight_only", {}),
    ],
)
def test_saved_then_loaded_model_gives_identical_logits_and_generates(
    method, extra, tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path
):
    if method == "torchao_int8_weight_only" and backends.torchao_problem():
        pytest.skip(backends.torchao_problem())
    options = methods.Options(method=method, skip=[], **extra)
    model, _ = methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())
    loaded = _round_trip(model, tiny_tokenizer, method, tiny_model_dir, tmp_path / "q")
    assert (tmp_path / "q" / "tokenizer.json").is_file()
    config = json.loads((tmp_path / "q" / io.CONFIG_NAME).read_text())
    assert config["method"] == method and config["modules"]
    assert metrics.tokens_per_second(loaded, tiny_tokenizer, new_tokens=4) > 0


def test_int8_with_calibration_stays_close_to_the_original(
    tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path
):
    before = metrics.perplexity(tiny_model, tiny_tokenizer, SPLIT.held_out)
    options = methods.Options(method="int8_symmetric", skip=[], calibration_samples=8)
    model, details = methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())
    assert details["activation_calibration"] and details["embedding"] == "model.embed_tokens"
    assert isinstance(model.model.embed_tokens, QuantEmbedding)
    assert all(m.input_scale is not None for m in model.modules() if isinstance(m, QuantLinear))
    loaded = _round_trip(model, tiny_tokenizer, "int8_symmetric", tiny_model_dir, tmp_path / "q")
    after = metrics.perplexity(loaded, tiny_tokenizer, SPLIT.held_out)
    assert abs(after / before - 1) < 0.05
    # weights, embeddings and the output layer in int8 with fp32 row scales: about 0.27x float32
    assert metrics.folder_weight_bytes(tmp_path / "q") < 0.3 * metrics.folder_weight_bytes(tiny_model_dir)


def test_dynamic_int8_uses_int8_kernels(tiny_model, tiny_tokenizer):
    options = methods.Options(method="int8_dynamic")
    model, _ = methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())
    layer = model.model.layers[0].mlp.down_proj
    assert backends.is_dynamic_linear(layer) and layer.weight().dtype == torch.qint8
    assert type(model.lm_head) is torch.nn.Linear  # kept: lm_head is skipped by default
    assert metrics.perplexity(model, tiny_tokenizer, SPLIT.held_out) > 1


def test_qat_lowers_the_ternary_perplexity_compared_with_ptq(tiny_model_dir, tiny_tokenizer):
    from pipelines.ml.loading import LoadOptions, load_model

    def fresh():
        return load_model(tiny_model_dir, LoadOptions()).eval()

    def ppl(m):
        return metrics.perplexity(m, tiny_tokenizer, SPLIT.held_out)

    data = _data(tiny_tokenizer)
    ptq, _ = methods.quantize(fresh(), methods.Options(method="ternary_b158"), data, Hooks())
    losses = []
    hooks = Hooks(metric=lambda name, value, step=None: losses.append(value))
    options = methods.Options(method="ternary_b158", qat_steps=8, qat_learning_rate=2e-3)
    trained, details = methods.quantize(fresh(), options, data, hooks, evaluate=ppl)
    assert details["perplexity_ptq"] == pytest.approx(ppl(ptq), rel=1e-2)  # step 0 of QAT == PTQ
    assert ppl(trained) < ppl(ptq)
    assert len(losses) == 8 and details["qat"]["steps"] == 8
    assert isinstance(trained.model.layers[0].self_attn.q_proj, BitLinear)


def test_mixed_precision_respects_the_budget(tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path):
    names = methods.linear_names(tiny_model, methods.Options(method="mixed"))
    budget_mb = 0.18  # fixed part (fp32 lm_head, int8 embeddings) ~0.12 MB; linears 0.016-0.16 MB
    options = methods.Options(method="mixed", size_budget_mb=budget_mb, calibration_samples=8)
    model, details = methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())
    assert {row["name"] for row in details["layers"]} == set(names)
    assert len(set(row["level"] for row in details["layers"])) > 1  # a real mix at this budget
    _round_trip(model, tiny_tokenizer, "mixed", tiny_model_dir, tmp_path / "q")
    assert metrics.folder_weight_bytes(tmp_path / "q") <= budget_mb * 1024**2


def test_an_impossible_budget_fails_with_the_smallest_reachable_size(tiny_model, tiny_tokenizer):
    options = methods.Options(method="mixed", size_budget_mb=0.001, calibration_samples=4)
    with pytest.raises(backends.QuantError, match=r"cannot be met.*at least \d+\.\d+ MB"):
        methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())


def test_a_model_with_every_linear_skipped_has_nothing_to_quantize(tiny_model, tiny_tokenizer):
    options = methods.Options(method="int8_symmetric", skip=["*"])
    with pytest.raises(backends.QuantError, match="no linear layers to quantize"):
        methods.quantize(tiny_model, options, _data(tiny_tokenizer), Hooks())


def test_nf4_through_bitsandbytes_loads_back_identically(tiny_model_dir, tiny_tokenizer, tmp_path):
    from pipelines.ml.loading import bnb_4bit_problem

    problem = bnb_4bit_problem("cpu")
    if problem:
        pytest.skip(problem)
    model = backends.bnb_load(
        tiny_model_dir, "bnb_nf4", device="cpu", double_quant=True, compute_dtype="fp32", skip=["lm_head"]
    )
    assert backends.bnb_layer_names(model)
    loaded = _round_trip(model, tiny_tokenizer, "bnb_nf4", tiny_model_dir, tmp_path / "nf4")
    report = metrics.per_layer_report(
        loaded, backends.bnb_layer_names(loaded), metrics.OriginalWeights(tiny_model_dir)
    )
    # 4 bits + an 8-bit absmax per 64 weights + ~1.3 KB of fixed quant maps per layer, which on
    # these 4096-weight layers adds ~2.5 bits (on a 4096x4096 layer it would add 0.0006)
    assert all(4.1 < row["bits_per_weight"] < 7.0 for row in report)
    assert all(0 < row["relative_error"] < 0.2 for row in report)


def test_bnb_4bit_on_cpu_names_the_layers_whose_width_it_cannot_run():
    with pytest.raises(backends.QuantError, match=r"multiple of 32.*mlp.up_proj \(48\)"):
        backends.check_bnb("bnb_nf4", "cpu", {"model.layers.0.mlp.up_proj": 48, "lm_head": 64})
    backends.check_bnb("bnb_int8", "cpu", {"model.layers.0.mlp.up_proj": 48})  # LLM.int8() has no such limit
