"""Loading a base model and its tokenizer, for training and evaluation (workers only).

Every model goes through ``AutoModelForCausalLM.from_pretrained`` with safetensors only and
``trust_remote_code`` off unless the platform allowed it: the bundled demo model, a local
folder and a hub snapshot take the same path. A MODEL artifact's metadata names where the
weights are (see ``pipelines.nodes.source_model.run``); this module turns that into a folder
on this worker, downloading or building it when a different worker resolved it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.context import ArtifactRef, NodeFailure

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HUB_HOST = ("huggingface.co", 443)


def has_internet(timeout: float = 2.0) -> bool:
    """Whether the hub can be reached; HF_HUB_OFFLINE=1 forces no."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_snapshot(
    hub_id: str, *, revision: str | None = None, progress=None, cache_dir: str | None = None
) -> Path:
    """The local folder of a hub model: from the cache, else downloaded (safetensors only)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.jinja", "*.model", "*.txt"]
    kwargs: dict[str, Any] = {"repo_id": hub_id, "revision": revision, "allow_patterns": patterns}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    if not has_internet():
        raise NodeFailure(
            f"the hub model {hub_id!r} is not in this worker's cache and the worker has no internet "
            "access: download it on a machine with internet (it is cached under HF_HOME), "
            "register a local folder instead, or use the bundled “demo” model"
        )
    try:
        if progress is not None:
            progress(0, None, f"downloading {hub_id} from the hub")
        return Path(snapshot_download(**kwargs))
    except RepositoryNotFoundError as exc:
        raise NodeFailure(f"no model {hub_id!r} on the hub (or it is private/gated)") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise NodeFailure(f"downloading {hub_id!r} failed: {exc}") from exc


def model_folder(ref: ArtifactRef, progress=None) -> Path:
    """The folder holding a MODEL artifact's weights on this worker."""
    meta = ref.metadata or {}
    if ref.path and Path(ref.path).is_dir() and (Path(ref.path) / "config.json").is_file():
        return Path(ref.path)
    path = meta.get("model_path")
    if path and (Path(path) / "config.json").is_file():
        return Path(path)
    if meta.get("source") == "demo" and path:
        from pipelines.ml.demo import DemoConfig, build_demo_model

        build_demo_model(
            path, DemoConfig(steps=int(meta.get("demo_steps") or DemoConfig.steps)), progress=progress
        )
        return Path(path)
    if meta.get("hub_id"):
        return hub_snapshot(meta["hub_id"], revision=meta.get("revision"), progress=progress)
    raise NodeFailure("the model input has no weights this worker can read (no folder and no hub id)")


@dataclass
class LoadOptions:
    device: str = "cpu"
    dtype: str = "auto"  # auto / float32 / bfloat16 / float16
    load_in_4bit: bool = False
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "fp32"
    trust_remote_code: bool = False


def resolve_dtype(name: str, device: str, saved: str | None = None) -> torch.dtype:
    """``auto`` is float32 on a CPU (half precision there is slow and lossy), else as saved."""
    if name != "auto":
        return DTYPES[name]
    if not device.startswith("cuda"):
        return torch.float32
    return DTYPES.get(saved or "", torch.float32)


def saved_dtype(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("dtype") or config.get("torch_dtype")


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of the loss and attention, so reusing EOS is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, options: LoadOptions):
    """The model on ``options.device``; 4-bit (bitsandbytes) when asked. Raises NodeFailure."""
    from transformers import AutoModelForCausalLM

    if quantized_method(folder):
        return _load_quantized(folder, options.device)
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": options.trust_remote_code,
        "dtype": resolve_dtype(options.dtype, options.device, saved_dtype(folder)),
    }
    if options.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=options.quant_type,
            bnb_4bit_use_double_quant=options.double_quant,
            bnb_4bit_compute_dtype=COMPUTE_DTYPES[options.compute_dtype],
        )
        kwargs["device_map"] = {"": options.device}
        kwargs["dtype"] = COMPUTE_DTYPES[options.compute_dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise NodeFailure(f"could not load the model from {folder}: {exc}") from exc
    if not options.load_in_4bit and getattr(model, "hf_device_map", None) is None:
        model.to(options.device)
    return model


def quantized_method(folder: Path) -> str | None:
    """The method of a folder written by the quantize node (``quantization_config.json``)."""
    path = Path(folder) / "quantization_config.json"
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("method") or "unknown")
    except (OSError, ValueError):
        return "unknown"


def uses_own_layers(folder: Path) -> bool:
    """Quantized with the platform's own layers (int8/ternary...), which peft cannot wrap;
    bitsandbytes folders load through transformers and take LoRA (QLoRA) normally."""
    path = Path(folder) / "quantization_config.json"
    try:
        return path.is_file() and json.loads(path.read_text()).get("loader") != "transformers"
    except (OSError, ValueError):
        return True


def _load_quantized(folder: Path, device: str):
    from pipelines.quant.io import load_quantized

    try:
        return load_quantized(folder, device=device)
    except Exception as exc:  # noqa: BLE001 - QuantError and loader errors become one message
        raise NodeFailure(f"could not load the quantized model from {folder}: {exc}") from exc


def bnb_4bit_problem(device: str) -> str | None:
    """None when bitsandbytes can run a 4-bit layer on ``device``, else why not.

    Checked with a real 4-bit matmul (CPU kernels exist only for some CPUs and builds), so
    QLoRA falls back to LoRA with a message instead of failing mid-training.
    """
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # noqa: BLE001 - any import problem means "not available"
        return f"bitsandbytes cannot be imported ({type(exc).__name__}: {exc})"
    try:
        layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        layer = layer.to(device)
        x = torch.randn(2, 64, device=device, requires_grad=True)
        layer(x).sum().backward()
    except Exception as exc:  # noqa: BLE001 - report whatever the kernel raised
        return f"bitsandbytes 4-bit does not run on {device} ({type(exc).__name__}: {str(exc)[:200]})"
    return None
