"""Saving and loading quantized models: safetensors plus ``quantization_config.json``.

Folder layout (a normal Hugging Face folder with two differences):

    config.json, generation_config.json, tokenizer files   as the input model had them
    model.safetensors           the quantized state: int8 codes, packed ternary bytes, scales...
    quantization_config.json    method, loader, and one entry per quantized module

bitsandbytes models are saved by transformers itself (its quantization_config goes into
config.json, and ``from_pretrained`` restores them); quantization_config.json then says
``"loader": "transformers"``. For the other methods ``load_quantized`` builds the model from
config.json, swaps in the layers the config lists, and loads the saved tensors as they are
(``assign=True``: no dtype conversion), so the loaded model computes exactly what was saved.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.quant import backends
from pipelines.quant.convert import TiedLMHead, quantized_modules, set_module
from pipelines.quant.layers import LAYER_TYPES

CONFIG_NAME = "quantization_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
OWN_LOADER = "pipelines.quant"
# Files of the input folder that the quantized folder must not inherit.
NOT_COPIED = {"config.json", CONFIG_NAME, "model.safetensors.index.json", "demo.json"}


def read_quant_config(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / CONFIG_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def is_quantized_folder(folder: Path) -> bool:
    return (Path(folder) / CONFIG_NAME).is_file()


def copy_side_files(source: Path, out: Path) -> None:
    """Tokenizer, generation config, chat template...: everything but weights and configs."""
    for path in Path(source).iterdir():
        if not path.is_file() or path.name in NOT_COPIED or path.suffix in (".safetensors", ".bin", ".pt"):
            continue
        if not (out / path.name).exists():
            shutil.copy2(path, out / path.name)


# -- save ----------------------------------------------------------------------------------------


def save_quantized(
    model: nn.Module, out: Path, *, method: str, source: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write the folder; returns the quantization config written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if method in backends.BNB_METHODS:
        model.save_pretrained(str(out), safe_serialization=True)
        modules: dict[str, Any] = {name: {"type": "bnb"} for name in backends.bnb_layer_names(model)}
        loader, aliases = "transformers", {}
    else:
        tensors, metadata, modules, aliases = own_state(model, method)
        from safetensors.torch import save_file

        save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", **metadata})
        shutil.copy2(Path(source) / "config.json", out / "config.json")
        loader = OWN_LOADER
    copy_side_files(Path(source), out)
    config = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "loader": loader,
        "modules": modules,
        "aliases": aliases,
        **extra,
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return config


def own_state(model: nn.Module, method: str):
    """(tensors, safetensors metadata, module configs, aliases) for the non-bnb methods."""
    modules = {name: m.quant_config() for name, m in quantized_modules(model).items()}
    dynamic = {name: m for name, m in model.named_modules() if backends.is_dynamic_linear(m)}
    tensors: dict[str, torch.Tensor] = {}
    for name, module in dynamic.items():
        modules[name] = backends.dynamic_config(module)
        tensors.update({f"{name}.{k}": t for k, t in backends.dynamic_state(module).items()})
    state = {
        k: v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor) and not any(k.startswith(d + ".") for d in dynamic)
    }
    metadata: dict[str, str] = {}
    if method == "torchao_int8_weight_only":
        for name, m in model.named_modules():
            if hasattr(getattr(m, "weight", None), "qdata"):
                modules[name] = {
                    "type": "torchao_int8",
                    "in_features": m.in_features,
                    "out_features": m.out_features,
                }
        state, metadata = backends.torchao_flatten(state)
    state, aliases = _dedupe(state)
    tensors.update({k: v.detach().contiguous() for k, v in state.items()})
    return tensors, metadata, modules, aliases


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied tensors (one storage under two names) are saved once; the loader re-ties them."""
    seen: dict[tuple, str] = {}
    kept, aliases = {}, {}
    for key, tensor in state.items():
        ident = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
        )
        if tensor.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        kept[key] = tensor
    return kept, aliases


# -- load ----------------------------------------------------------------------------------------


def load_quantized(folder: Path, *, device: str = "cpu") -> nn.Module:
    """The model saved by ``save_quantized``, in eval mode. Raises QuantError if the folder is
    not a quantized model this code can read."""
    folder = Path(folder)
    config = read_quant_config(folder)
    if config is None:
        raise backends.QuantError(f"{folder} has no {CONFIG_NAME}: it is not a quantized model")
    if config.get("format_version", 1) > FORMAT_VERSION:
        raise backends.QuantError(
            f"{folder} was saved by a newer version (format {config['format_version']})"
        )
    if config["loader"] == "transformers":
        return _load_with_transformers(folder, device)
    model = _skeleton(folder)
    _swap_in(model, config)
    _load_tensors(model, folder, config)
    if config["method"] != "int8_dynamic":  # dynamic int8 kernels run on CPUs only
        model.to(device)
    return model.eval()


def _load_with_transformers(folder: Path, device: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), device_map={"": device}, use_safetensors=True
        )
    return model.eval()


def _skeleton(folder: Path) -> nn.Module:
    """The architecture from config.json, without spending time on random initialisation."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        no_init_weights = contextlib.nullcontext
    config = AutoConfig.from_pretrained(str(folder))
    with no_init_weights():
        return AutoModelForCausalLM.from_config(config)


def _swap_in(model: nn.Module, config: dict[str, Any]) -> None:
    modules = config["modules"]
    method = config["method"]
    if method == "torchao_int8_weight_only":
        backends.torchao_quantize(model, [n for n, c in modules.items() if c["type"] == "torchao_int8"])
    dynamic = {n: c for n, c in modules.items() if c["type"] == "dynamic_int8"}
    if dynamic:
        per_channel = next(iter(dynamic.values()))["per_channel"]
        backends.dynamic_quantize(model, list(dynamic), per_channel=per_channel)
    for name, cfg in modules.items():
        if cfg["type"] in LAYER_TYPES:
            set_module(model, name, LAYER_TYPES[cfg["type"]].from_config(cfg))
    for name, cfg in modules.items():
        if cfg["type"] == "tied":
            set_module(model, name, TiedLMHead(model.get_submodule(cfg["source"]), cfg["source"]))


def _load_tensors(model: nn.Module, folder: Path, config: dict[str, Any]) -> None:
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    dynamic: dict[str, nn.Module] = {}
    for name, cfg in config["modules"].items():
        if cfg["type"] == "dynamic_int8":
            prefix = name + "."
            own = {k[len(prefix) :]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)}
            dynamic[name] = model.get_submodule(name)
            backends.dynamic_restore(dynamic[name], own, per_channel=cfg["per_channel"])
            # restored already; load_state_dict below must not look for their float weights
            set_module(model, name, nn.Identity())
    state: dict[str, Any] = tensors
    if config["method"] == "torchao_int8_weight_only":
        state = backends.torchao_unflatten(tensors, metadata)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    for name, module in dynamic.items():
        set_module(model, name, module)
    aliases = config.get("aliases", {})
    missing = [k for k in missing if k not in aliases]
    if missing or unexpected:
        raise backends.QuantError(
            f"the saved tensors do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for alias, target in aliases.items():
        owner, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(target))
