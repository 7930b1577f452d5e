"""Library-backed methods: bitsandbytes (NF4, FP4, LLM.int8()), torchao int8 weight-only and
PyTorch's dynamic int8. Each checks first that it can run here and otherwise raises a
``QuantError`` that names what is missing and what to do instead."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.context import NodeFailure

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BNB_METHODS = ("bnb_nf4", "bnb_fp4", "bnb_int8")
# bitsandbytes' CPU 4-bit kernels work on blocks of 32 output features.
BNB_CPU_WIDTH = 32


class QuantError(NodeFailure):
    """A method cannot run on this model or device; the message says what to change."""


# -- bitsandbytes ---------------------------------------------------------------------------------


def bnb_config(method: str, *, double_quant: bool, compute_dtype: str, skip: list[str]):
    """The seed's ``BitsAndBytesConfig`` examples, one per method."""
    from transformers import BitsAndBytesConfig

    if method == "bnb_int8":
        return BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=6.0, llm_int8_skip_modules=skip or None
        )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.removeprefix("bnb_"),
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=COMPUTE_DTYPES[compute_dtype],
        llm_int8_skip_modules=skip or None,
    )


def check_bnb(method: str, device: str, widths: dict[str, int]) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import problem means "not available"
        raise QuantError(
            f"bitsandbytes cannot be imported on this worker ({type(exc).__name__}: {exc}); install "
            "bitsandbytes or choose int8_symmetric, which needs no extra library"
        ) from exc
    if method != "bnb_int8" and not device.startswith("cuda"):
        odd = [f"{name} ({width})" for name, width in widths.items() if width % BNB_CPU_WIDTH]
        if odd:
            raise QuantError(
                f"bitsandbytes' CPU 4-bit kernels need every quantized layer's output width to be a "
                f"multiple of {BNB_CPU_WIDTH}; these are not: {', '.join(odd[:5])}. Add them to "
                "'Layers kept as they are', run on a CUDA GPU worker, or choose int8_symmetric"
            )


def bnb_load(
    folder: Path, method: str, *, device: str, double_quant: bool, compute_dtype: str, skip: list[str]
):
    """Load the model through transformers with a BitsAndBytesConfig (quantizing while loading).

    Save it before running it: on CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights
    into a CPU layout at the first forward pass, and ``save_pretrained`` would then write that
    layout, which ``from_pretrained`` does not read back as such."""
    from transformers import AutoModelForCausalLM

    config = bnb_config(method, double_quant=double_quant, compute_dtype=compute_dtype, skip=skip)
    dtype = (
        torch.float16 if method == "bnb_int8" and device.startswith("cuda") else COMPUTE_DTYPES[compute_dtype]
    )
    with bnb_guard(method, device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            quantization_config=config,
            device_map={"": device},
            dtype=dtype,
            use_safetensors=True,
        )
    return model.eval()


@contextlib.contextmanager
def bnb_guard(method: str, device: str) -> Iterator[None]:
    """Turn a kernel failure (the first forward pass, or loading) into a message for the user."""
    try:
        yield
    except QuantError:
        raise
    except Exception as exc:  # noqa: BLE001 - kernels fail with many exception types
        raise QuantError(
            f"bitsandbytes {method.removeprefix('bnb_').upper()} does not run on {device} here "
            f"({type(exc).__name__}: {str(exc)[:300]}). Its CPU kernels exist only for some CPUs and "
            "builds: run this node on a CUDA GPU worker, or choose int8_symmetric / int8_dynamic"
        ) from exc


def bnb_layer_names(model: nn.Module) -> list[str]:
    import bitsandbytes as bnb

    kinds = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


# -- torchao ----------------------------------------------------------------------------------------


def torchao_problem() -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8WeightOnlyConfig, quantize_  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"torchao cannot be imported ({type(exc).__name__}: {exc})"
    return None


def torchao_quantize(model: nn.Module, names: list[str]) -> None:
    problem = torchao_problem()
    if problem:
        raise QuantError(f"{problem}; install torchao (pip install torchao) or choose int8_symmetric")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    wanted = set(names)
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, fqn: fqn in wanted)


def torchao_flatten(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    return flatten_tensor_state_dict(state)


def torchao_unflatten(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, Any]:
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    result = unflatten_tensor_state_dict(tensors, metadata)
    return result[0] if isinstance(result, tuple) else result


# -- dynamic int8 (CPU) -------------------------------------------------------------------------------


def dynamic_problem() -> str | None:
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
        return f"this PyTorch build has no CPU int8 engine (engines: {engines})"
    return None


def dynamic_quantize(model: nn.Module, names: list[str], *, per_channel: bool) -> nn.Module:
    """int8 weights (scales fixed now), activations quantized per batch while running: PyTorch's
    ``quantize_dynamic`` with FBGEMM/oneDNN kernels. CPU only."""
    problem = dynamic_problem()
    if problem:
        raise QuantError(f"dynamic int8 cannot run: {problem}; choose int8_symmetric instead")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization warns it will move to torchao
        model = quantize_dynamic(
            model.float().cpu(), {name: qconfig for name in names}, dtype=torch.qint8, inplace=True
        )
    return model


def is_dynamic_linear(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def dynamic_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A dynamic int8 layer as plain tensors (its packed FBGEMM weights cannot go in safetensors)."""
    qweight, bias = module._weight_bias()
    out = {"qweight": qweight.int_repr().contiguous()}
    if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        out["weight_scale"] = qweight.q_per_channel_scales().to(torch.float64).reshape(-1, 1).contiguous()
        out["weight_zero_point"] = (
            qweight.q_per_channel_zero_points().to(torch.int64).reshape(-1, 1).contiguous()
        )
    else:
        out["weight_scale"] = torch.tensor([qweight.q_scale()], dtype=torch.float64)
        out["weight_zero_point"] = torch.tensor([qweight.q_zero_point()], dtype=torch.int64)
    if bias is not None:
        out["bias"] = bias.detach().contiguous()
    return out


def dynamic_restore(module: nn.Module, state: dict[str, torch.Tensor], *, per_channel: bool) -> None:
    """Put saved tensors back into a dynamic int8 layer, bit for bit."""
    q, scale, zp = state["qweight"], state["weight_scale"], state["weight_zero_point"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if per_channel:
            qweight = torch._make_per_channel_quantized_tensor(q, scale.reshape(-1), zp.reshape(-1), 0)
        else:
            qweight = torch._make_per_tensor_quantized_tensor(q, float(scale.item()), int(zp.item()))
        module.set_weight_bias(qweight, state.get("bias"))


def dynamic_config(module: nn.Module) -> dict[str, Any]:
    qweight, bias = module._weight_bias()
    per_channel = qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    return {
        "type": "dynamic_int8",
        "in_features": module.in_features,
        "out_features": module.out_features,
        "bias": bias is not None,
        "per_channel": per_channel,
    }
