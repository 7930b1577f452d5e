"""Quantized layers that replace ``nn.Linear`` / ``nn.Embedding`` inside a model.

Each layer keeps only its compact storage as buffers (so ``state_dict()`` is what is saved),
computes in the dtype of its input, and describes itself with ``quant_config()``; the loader
rebuilds an empty layer from that description with ``from_config`` and fills it from the
safetensors file, which restores the model bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.quant import formulas, packing

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _bias_buffer(module: nn.Module, bias: torch.Tensor | None) -> None:
    module.register_buffer("bias", None if bias is None else bias.detach().clone())


def _bias_dtype(bias: torch.Tensor | None) -> torch.dtype:
    return bias.dtype if bias is not None else torch.float32


def _linear_config(layer: nn.Module, **extra: Any) -> dict[str, Any]:
    """The fields every linear layer saves; ``extra`` goes between ``bias`` and ``bias_dtype``
    (key order kept as quantization_config.json has always had it)."""
    return {
        "type": layer.kind,
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "bias": layer.bias is not None,
        **extra,
        "bias_dtype": dtype_name(layer.bias.dtype) if layer.bias is not None else None,
    }


def _linear_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords for the fields ``_linear_config`` wrote."""
    return {"bias": cfg["bias"], "bias_dtype": DTYPES[cfg.get("bias_dtype") or "float32"]}


class QuantLinear(nn.Module):
    """y = x' W'^T + b, with W' = (q - zero_point) * scale (int8, or int4 packed 2 per byte).

    With calibration (``input_scale`` set), the input is also rounded to the int8 grid that
    calibration measured (static W8A8 simulated in float: the numbers an int8 kernel would see).
    """

    kind = "int"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        bits: int = 8,
        symmetric: bool = True,
        per_channel: bool = True,
        act_quant: bool = False,
        bias_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if bits not in (4, 8):
            raise ValueError("QuantLinear supports 4 or 8 bits")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.symmetric, self.per_channel = bits, symmetric, per_channel
        rows = out_features if per_channel else 1
        numel = in_features * out_features
        storage = (
            torch.zeros(out_features, in_features, dtype=torch.int8)
            if bits == 8
            else torch.zeros((numel + 1) // 2, dtype=torch.uint8)
        )
        self.register_buffer("qweight", storage)
        self.register_buffer("weight_scale", torch.ones(rows, 1) if per_channel else torch.ones(1))
        zp_shape = (rows, 1) if per_channel else (1,)
        self.register_buffer(
            "weight_zero_point", None if symmetric else torch.zeros(zp_shape, dtype=torch.int8)
        )
        _bias_buffer(self, torch.zeros(out_features, dtype=bias_dtype) if bias else None)
        self.register_buffer("input_scale", torch.ones(1) if act_quant else None)
        self.register_buffer(
            "input_zero_point", torch.zeros(1, dtype=torch.int8) if act_quant and not symmetric else None
        )

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, bits: int = 8, symmetric: bool = True, per_channel: bool = True
    ) -> QuantLinear:
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            bits=bits,
            symmetric=symmetric,
            per_channel=per_channel,
            bias_dtype=_bias_dtype(linear.bias),
        )
        quant = formulas.quantize(linear.weight, bits=bits, symmetric=symmetric, per_channel=per_channel)
        layer.qweight = quant.q if bits == 8 else packing.pack_int4(quant.q)
        layer.weight_scale = quant.scale
        layer.weight_zero_point = quant.zero_point
        if linear.bias is not None:
            layer.bias = linear.bias.detach().clone()
        return layer.to(linear.weight.device)

    def int_weight(self) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        return self.qweight if self.bits == 8 else packing.unpack_int4(self.qweight, shape)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return formulas.dequantize(self.int_weight(), self.weight_scale, self.weight_zero_point).to(dtype)

    @property
    def weight(self) -> torch.Tensor:  # for code that reads ``.weight`` (shape, dtype checks)
        return self.dequantized_weight()

    def set_input_range(self, low: float, high: float) -> None:
        """Static activation quantization from the range calibration observed."""
        x = torch.tensor([low, high], dtype=torch.float32, device=self.qweight.device)
        if self.symmetric:
            self.input_scale = formulas.symmetric_scale(x, bits=8)
            self.input_zero_point = None
        else:
            self.input_scale, self.input_zero_point = formulas.asymmetric_params(x, bits=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = formulas.fake_quantize_static(x, self.input_scale, self.input_zero_point)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def quant_config(self) -> dict[str, Any]:
        return _linear_config(
            self,
            bits=self.bits,
            symmetric=self.symmetric,
            per_channel=self.per_channel,
            act_quant=self.input_scale is not None,
        )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> QuantLinear:
        return cls(
            cfg["in_features"],
            cfg["out_features"],
            bits=cfg["bits"],
            symmetric=cfg["symmetric"],
            per_channel=cfg["per_channel"],
            act_quant=cfg["act_quant"],
            **_linear_kwargs(cfg),
        )

    def extra_repr(self) -> str:
        grain = "per_channel" if self.per_channel else "per_tensor"
        sym = "symmetric" if self.symmetric else "asymmetric"
        act = ", static int8 activations" if self.input_scale is not None else ""
        return f"{self.in_features} -> {self.out_features}, int{self.bits} {sym} {grain}{act}"


class QuantEmbedding(nn.Module):
    """A lookup table stored as int8 rows (one scale per row when per_channel)."""

    kind = "embedding_int"

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        padding_idx: int | None = None,
        symmetric: bool = True,
        per_channel: bool = True,
        out_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.symmetric, self.per_channel, self.out_dtype = symmetric, per_channel, out_dtype
        rows = num_embeddings if per_channel else 1
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(rows, 1) if per_channel else torch.ones(1))
        zp = None if symmetric else torch.zeros((rows, 1) if per_channel else (1,), dtype=torch.int8)
        self.register_buffer("weight_zero_point", zp)

    @classmethod
    def from_embedding(cls, emb: nn.Embedding, *, symmetric: bool = True, per_channel: bool = True):
        layer = cls(
            emb.num_embeddings,
            emb.embedding_dim,
            padding_idx=emb.padding_idx,
            symmetric=symmetric,
            per_channel=per_channel,
            out_dtype=emb.weight.dtype,
        )
        quant = formulas.quantize(emb.weight, bits=8, symmetric=symmetric, per_channel=per_channel)
        layer.qweight, layer.weight_scale, layer.weight_zero_point = quant.q, quant.scale, quant.zero_point
        return layer.to(emb.weight.device)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        w = formulas.dequantize(self.qweight, self.weight_scale, self.weight_zero_point)
        return w.to(dtype or self.out_dtype)

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantized_weight()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        q = self.qweight[ids].float()
        if self.per_channel:
            scale = self.weight_scale[ids]
            zp = None if self.weight_zero_point is None else self.weight_zero_point[ids].float()
        else:
            scale = self.weight_scale
            zp = None if self.weight_zero_point is None else self.weight_zero_point.float()
        if zp is not None:
            q = q - zp
        return (q * scale).to(self.out_dtype)

    def quant_config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "bits": 8,
            "symmetric": self.symmetric,
            "per_channel": self.per_channel,
            "out_dtype": dtype_name(self.out_dtype),
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> QuantEmbedding:
        return cls(
            cfg["num_embeddings"],
            cfg["embedding_dim"],
            padding_idx=cfg["padding_idx"],
            symmetric=cfg["symmetric"],
            per_channel=cfg["per_channel"],
            out_dtype=DTYPES[cfg["out_dtype"]],
        )


class BitLinear(nn.Module):
    """BitNet b1.58 linear layer running on packed ternary weights.

    y = (x_q @ W_t^T) * gamma / s_x + b, where W_t in {-1, 0, 1} is unpacked from 5 trits per
    byte, gamma = mean|W| (per tensor, or per output row when per_channel), and x_q the int8
    per-token absmax activations with s_x = 127 / max|x|. ``x_q @ W_t^T`` only adds and
    subtracts integers; it runs as a float matmul here (exact: the sums stay below 2**24).
    """

    kind = "ternary"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        per_channel: bool = False,
        bias_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.in_features, self.out_features, self.per_channel = in_features, out_features, per_channel
        size = packing.packed_ternary_size(in_features * out_features)
        self.register_buffer("packed_weight", torch.zeros(size, dtype=torch.uint8))
        # One scale per row is stored in bfloat16 (range of float32, 16 bits): with 64-wide rows a
        # float32 scale alone would add 0.5 bit per weight, pushing 1.6 past 2. Its 0.4% rounding
        # is nothing next to ternarization's own error.
        scale = torch.ones(out_features, 1, dtype=torch.bfloat16) if per_channel else torch.ones(1)
        self.register_buffer("weight_scale", scale)
        _bias_buffer(self, torch.zeros(out_features, dtype=bias_dtype) if bias else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, *, per_channel: bool = False):
        out_features, in_features = weight.shape
        layer = cls(
            in_features,
            out_features,
            bias=bias is not None,
            per_channel=per_channel,
            bias_dtype=_bias_dtype(bias),
        )
        ternary, gamma = formulas.absmean_ternary(weight, per_channel=per_channel)
        layer.packed_weight = packing.pack_ternary(ternary)
        layer.weight_scale = gamma.to(layer.weight_scale.dtype)
        if bias is not None:
            layer.bias = bias.detach().clone()
        return layer.to(weight.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, per_channel: bool = False) -> BitLinear:
        return cls.from_weight(linear.weight, linear.bias, per_channel=per_channel)

    def ternary_weight(self) -> torch.Tensor:
        return packing.unpack_ternary(self.packed_weight, (self.out_features, self.in_features))

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.ternary_weight().float() * self.weight_scale.float()).to(dtype)

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantized_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_q, s = formulas.activation_absmax_per_token(x.float())
        y = F.linear(x_q, self.ternary_weight().float())
        gamma = self.weight_scale.float()
        y = y * (gamma.reshape(1, -1) if self.per_channel else gamma) / s
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype)

    def quant_config(self) -> dict[str, Any]:
        return _linear_config(self, per_channel=self.per_channel)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> BitLinear:
        return cls(
            cfg["in_features"],
            cfg["out_features"],
            per_channel=cfg["per_channel"],
            **_linear_kwargs(cfg),
        )

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, ternary packed 5/byte, int8 activations"


class TernaryQATLinear(nn.Module):
    """Training form of ``BitLinear``: keeps float "latent" weights and quantizes them (and the
    activations) in the forward pass. ``round`` has zero gradient almost everywhere, so the
    straight-through estimator passes the gradient through as if quantization were the
    identity: ``w + (quant(w) - w).detach()`` equals quant(w) forward, has gradient 1 backward."""

    def __init__(self, linear: nn.Linear, *, per_channel: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.per_channel = (
            linear.in_features,
            linear.out_features,
            per_channel,
        )
        self.weight = nn.Parameter(linear.weight.detach().clone().float())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone().float())

    def quantized_weight(self) -> torch.Tensor:
        w = self.weight
        dims = dict(dim=1, keepdim=True) if self.per_channel else {}
        gamma = w.abs().mean(**dims).clamp(min=1e-8).detach()
        w_q = torch.round(w / gamma).clamp(-1, 1) * gamma
        return w + (w_q - w).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        x_q, s = formulas.activation_absmax_per_token(xf)
        x_ste = xf + (x_q / s - xf).detach()
        return F.linear(x_ste, self.quantized_weight(), self.bias).to(x.dtype)

    def to_bitlinear(self) -> BitLinear:
        return BitLinear.from_weight(self.weight.detach(), self.bias, per_channel=self.per_channel)


class Float16Linear(nn.Module):
    """Weights kept in 16 bits (the "higher precision" level of mixed precision)."""

    kind = "fp16"

    def __init__(self, in_features: int, out_features: int, *, bias: bool, bias_dtype=torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight16", torch.zeros(out_features, in_features, dtype=torch.float16))
        _bias_buffer(self, torch.zeros(out_features, dtype=bias_dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Float16Linear:
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            bias_dtype=_bias_dtype(linear.bias),
        )
        layer.weight16 = linear.weight.detach().to(torch.float16)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().clone()
        return layer.to(linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.weight16.to(dtype)

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantized_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight16.to(x.dtype), bias)

    def quant_config(self) -> dict[str, Any]:
        return _linear_config(self)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Float16Linear:
        return cls(cfg["in_features"], cfg["out_features"], **_linear_kwargs(cfg))


LAYER_TYPES: dict[str, type[nn.Module]] = {
    cls.kind: cls for cls in (QuantLinear, QuantEmbedding, BitLinear, Float16Linear)
}
