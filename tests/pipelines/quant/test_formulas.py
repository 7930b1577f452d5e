"""The formulas, the packing and the quantized layers on known and random tensors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.quant import formulas, packing
from pipelines.quant.layers import BitLinear, QuantEmbedding, QuantLinear, TernaryQATLinear

# Relative slack for float32 arithmetic in x / scale.
SLACK = 1e-5


def _max_error_bound(quant: formulas.AffineQuant, x: torch.Tensor) -> torch.Tensor:
    """|x - x'| <= scale / 2 per element (scale broadcast per row when per channel)."""
    scale = quant.scale if quant.scale.dim() == 1 else quant.scale.expand(x.shape[0], x.shape[1])
    return scale / 2 * (1 + SLACK) + 1e-30


# -- known tensors ----------------------------------------------------------------------------------


def test_symmetric_scale_is_max_abs_over_127():
    w = torch.tensor([[-2.54, 0.0, 1.27], [0.5, -0.25, 0.1]])
    quant = formulas.quantize(w, bits=8, symmetric=True, per_channel=False)
    assert quant.scale.item() == pytest.approx(2.54 / 127)
    assert quant.q[0].tolist() == [-127, 0, 64]  # 1.27 / 0.02 = 63.5 rounds to 64 (half to even)
    assert quant.zero_point is None


def test_asymmetric_scale_and_zero_point_from_min_max():
    w = torch.tensor([-1.0, 0.0, 3.0])
    scale, zero_point = formulas.asymmetric_params(w, bits=8)
    assert scale.item() == pytest.approx(4.0 / 255)
    assert zero_point.item() == -128 - round(-1.0 / (4.0 / 255))  # qmin - round(min / scale)
    quant = formulas.quantize(w, bits=8, symmetric=False)
    assert quant.q.tolist() == [-128, zero_point.item(), 127]
    assert quant.dequantize()[1].item() == 0.0  # zero is exact


def test_asymmetric_beats_symmetric_on_skewed_data():
    torch.manual_seed(0)
    w = torch.rand(256) + 1.0  # all in [1, 2]
    sym = (formulas.quantize(w, symmetric=True).dequantize() - w).abs().max()
    asym = (formulas.quantize(w, symmetric=False).dequantize() - w).abs().max()
    assert asym < sym * 0.6


def test_per_channel_beats_per_tensor_on_a_skewed_weight():
    torch.manual_seed(0)
    w = torch.randn(8, 64) * 0.01
    w[0] *= 300  # one output channel with large weights dominates a single scale
    per_tensor = (formulas.quantize(w, per_channel=False).dequantize() - w).norm(dim=1)
    per_channel = (formulas.quantize(w, per_channel=True).dequantize() - w).norm(dim=1)
    assert per_channel[0] == pytest.approx(float(per_tensor[0]), rel=1e-3)  # same scale for the big row
    assert per_channel.sum() < per_tensor.sum()
    assert bool((per_channel[1:] < per_tensor[1:] / 10).all())  # the small rows get their own scale


def test_int4_packs_two_per_byte_and_round_trips():
    q = torch.randint(-8, 8, (7, 9), dtype=torch.int8)
    packed = packing.pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(63 / 2)
    assert torch.equal(packing.unpack_int4(packed, q.shape), q)


# -- property tests ----------------------------------------------------------------------------------

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


@st.composite
def matrices(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["random", "zeros", "constant", "outliers"]))
    if kind == "zeros":
        return torch.zeros(rows, cols)
    if kind == "constant":
        return torch.full((rows, cols), draw(finite))
    values = draw(
        st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=rows * cols, max_size=rows * cols)
    )
    x = torch.tensor(values).reshape(rows, cols)
    if kind == "outliers":
        x[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] = draw(finite)
    return x


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=matrices(), symmetric=st.booleans(), per_channel=st.booleans(), bits=st.sampled_from([4, 8]))
def test_round_trip_within_half_a_step(x, symmetric, per_channel, bits):
    quant = formulas.quantize(x, bits=bits, symmetric=symmetric, per_channel=per_channel)
    qmin, qmax = formulas.qrange(bits, symmetric)
    assert quant.q.dtype == torch.int8
    assert int(quant.q.min()) >= qmin and int(quant.q.max()) <= qmax
    error = (quant.dequantize() - x).abs()
    assert bool((error <= _max_error_bound(quant, x)).all()), float(error.max())
    if not x.any():
        assert not quant.dequantize().any()  # all-zero stays exactly zero


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.sampled_from([-1, 0, 1]), min_size=0, max_size=200))
def test_ternary_packing_round_trips_exactly(values):
    t = torch.tensor(values, dtype=torch.int8)
    packed = packing.pack_ternary(t)
    assert packed.dtype == torch.uint8
    assert packed.numel() == math.ceil(len(values) / 5)  # 1.6 bits per weight
    assert torch.equal(packing.unpack_ternary(packed, t.shape), t)


def test_ternary_packing_rejects_other_values():
    with pytest.raises(ValueError):
        packing.pack_ternary(torch.tensor([2]))


# -- ternary --------------------------------------------------------------------------------------------


def test_absmean_ternary_values_and_scale():
    w = torch.tensor([[0.9, -0.05, 0.4, -1.2], [0.0, 0.3, -0.6, 0.05]])
    t, gamma = formulas.absmean_ternary(w)
    assert gamma.item() == pytest.approx(w.abs().mean().item())
    assert set(t.unique().tolist()) <= {-1, 0, 1}
    assert torch.equal(t, torch.round(w / gamma).clamp(-1, 1).to(torch.int8))
    assert t[0].tolist() == [1, 0, 1, -1]  # |w| < gamma / 2 becomes 0 (gamma = 0.4375)


def test_bitlinear_stores_at_most_two_bits_and_matches_the_dequantized_reference():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 96, bias=True)
    layer = BitLinear.from_linear(linear, per_channel=True)
    stored = sum(t.numel() * t.element_size() for k, t in layer.state_dict().items() if k != "bias")
    assert stored * 8 / linear.weight.numel() <= 2.0
    assert set(layer.ternary_weight().unique().tolist()) <= {-1, 0, 1}
    x = torch.randn(3, 5, 128)
    # reference: int8 per-token activations, dequantized ternary weights, float matmul
    x_q, s = formulas.activation_absmax_per_token(x)
    reference = torch.nn.functional.linear(x_q / s, layer.dequantized_weight(), linear.bias)
    torch.testing.assert_close(layer(x), reference, rtol=1e-5, atol=1e-5)


def test_qat_layer_forward_equals_bitlinear_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    qat = TernaryQATLinear(linear)
    x = torch.randn(4, 64)
    out = qat(x)
    torch.testing.assert_close(out, qat.to_bitlinear()(x), rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert qat.weight.grad is not None and qat.weight.grad.abs().sum() > 0  # round() alone gives 0


def test_quant_linear_and_embedding_compute_with_dequantized_weights():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    for symmetric in (True, False):
        layer = QuantLinear.from_linear(linear, bits=8, symmetric=symmetric, per_channel=True)
        x = torch.randn(2, 64)
        expected = torch.nn.functional.linear(x, layer.dequantized_weight(), linear.bias)
        torch.testing.assert_close(layer(x), expected)
        assert (
            layer.dequantized_weight() - linear.weight
        ).abs().max() <= layer.weight_scale.max() / 2 * 1.001
    emb = torch.nn.Embedding(50, 64)
    qemb = QuantEmbedding.from_embedding(emb, symmetric=False)
    ids = torch.tensor([[1, 7, 49]])
    torch.testing.assert_close(qemb(ids), qemb.dequantized_weight()[ids])
