"""The quantization formulas, written to be read.

Integer quantization maps a float ``x`` to an integer ``q`` with a scale (and a zero point):

    symmetric  (data centred on zero):
        scale = max|x| / qmax                        qmax = 2**(bits-1) - 1 = 127 for int8
        q     = clamp(round(x / scale), -qmax, qmax)
        x'    = q * scale

    asymmetric (skewed data):
        scale      = (max - min) / (qmax - qmin)     qmin, qmax = -128, 127 for int8
        zero_point = qmin - round(min / scale)
        q          = clamp(round(x / scale) + zero_point, qmin, qmax)
        x'         = (q - zero_point) * scale

The range [min, max] is widened to contain 0 (as PyTorch and ONNX do) so that 0 is exactly
representable (padding, zeros after ReLU) and the zero point always fits in the integer type.
Both round to the nearest level, so |x - x'| <= scale / 2 for every element.

"Per tensor" uses one (scale, zero_point) for the whole matrix; "per channel" one per row,
i.e. per output channel of a linear layer's weight ``[out_features, in_features]``.

BitNet b1.58 (Ma et al. 2024) ternarizes weights with their absolute mean:

    gamma = mean|W|
    W_t   = clamp(round(W / gamma), -1, 1)          values in {-1, 0, +1}
    W'    = gamma * W_t

so a weight becomes 0 when |w| < gamma / 2. (The seed's sketch zeroes |w| <= gamma and drops
the scale; we follow the paper, which keeps gamma and rounds.) Activations are quantized to
8 bits per token with their absolute maximum:

    s_x = 127 / max|x_token|,   x_q = clamp(round(x * s_x), -128, 127),   x' = x_q / s_x
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Smallest scale we divide by: an all-zero row gets this scale and quantizes to exact zeros.
EPS = 1e-12


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range: symmetric drops -2**(bits-1) so that +/- are balanced (-127..127)."""
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


@dataclass
class AffineQuant:
    """Integers plus what it takes to map them back: x' = (q - zero_point) * scale."""

    q: torch.Tensor  # int8 values (int4 values are kept in int8 here; packing is separate)
    scale: torch.Tensor  # float32, shape [1] (per tensor) or [rows, 1] (per channel)
    zero_point: torch.Tensor | None  # int8 like scale's shape; None for symmetric
    bits: int

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.q, self.scale, self.zero_point).to(dtype)


def _reduce(x: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    x = x.detach().float()
    if per_channel:
        return fn(x.reshape(x.shape[0], -1), dim=1, keepdim=True).values
    return fn(x.reshape(1, -1), dim=1, keepdim=True).values.reshape(1)


def symmetric_scale(x: torch.Tensor, *, bits: int = 8, per_channel: bool = False) -> torch.Tensor:
    """scale = max|x| / qmax (one per row when per_channel)."""
    _, qmax = qrange(bits, symmetric=True)
    amax = _reduce(x.abs(), per_channel, torch.max)
    return torch.clamp(amax, min=EPS) / qmax


def asymmetric_params(
    x: torch.Tensor, *, bits: int = 8, per_channel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """scale = (max - min) / (qmax - qmin); zero_point = qmin - round(min / scale)."""
    qmin, qmax = qrange(bits, symmetric=False)
    low = torch.clamp(_reduce(x, per_channel, torch.min), max=0.0)  # widened to contain 0
    high = torch.clamp(_reduce(x, per_channel, torch.max), min=0.0)
    scale = torch.clamp((high - low) / (qmax - qmin), min=EPS)
    zero_point = (qmin - torch.round(low / scale)).clamp(qmin, qmax).to(torch.int8)
    return scale, zero_point


def _broadcast(param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-row [rows, 1] parameter against an [rows, ...] tensor."""
    return param.reshape(param.shape[0], *([1] * (x.dim() - 1))) if param.dim() > 1 else param


def quantize(
    x: torch.Tensor, *, bits: int = 8, symmetric: bool = True, per_channel: bool = False
) -> AffineQuant:
    """Quantize with the formulas above; the integers are stored as int8."""
    qmin, qmax = qrange(bits, symmetric)
    xf = x.detach().float()
    if symmetric:
        scale, zero_point = symmetric_scale(xf, bits=bits, per_channel=per_channel), None
        q = torch.round(xf / _broadcast(scale, xf)).clamp(qmin, qmax)
    else:
        scale, zero_point = asymmetric_params(xf, bits=bits, per_channel=per_channel)
        zp = _broadcast(zero_point, xf).float()
        q = (torch.round(xf / _broadcast(scale, xf)) + zp).clamp(qmin, qmax)
    return AffineQuant(q.to(torch.int8), scale.float(), zero_point, bits)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """x' = (q - zero_point) * scale, in float32."""
    qf = q.float()
    if zero_point is not None:
        qf = qf - _broadcast(zero_point, qf).float()
    return qf * _broadcast(scale, qf)


def fake_quantize_static(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int = 8
) -> torch.Tensor:
    """Round ``x`` to the int grid fixed by calibration (one scale for all activations of a
    layer) and map it back: what an int8 kernel would see, computed in float."""
    qmin, qmax = qrange(bits, symmetric=zero_point is None)
    zp = zero_point.float() if zero_point is not None else 0.0
    q = (torch.round(x / scale.to(x.dtype)) + zp).clamp(qmin, qmax)
    return ((q - zp) * scale.to(x.dtype)).to(x.dtype)


def activation_absmax_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BitNet's 8-bit activations: one scale per token (last dimension), absmax."""
    s = 127.0 / x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    x_q = torch.round(x * s).clamp(-128, 127)
    return x_q, s


def absmean_ternary(w: torch.Tensor, *, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """BitNet b1.58: gamma = mean|W|, W_t = clamp(round(W / gamma), -1, 1). Returns (W_t int8,
    gamma); gamma has shape [1], or [rows, 1] when per_channel (one per output row)."""
    wf = w.detach().float()
    gamma = wf.abs().mean(dim=1, keepdim=True) if per_channel else wf.abs().mean().reshape(1)
    gamma = gamma.clamp(min=1e-8)
    return torch.round(wf / gamma).clamp(-1, 1).to(torch.int8), gamma
