"""Facts about a model folder without loading it: config.json plus the safetensors headers.

A safetensors file starts with an 8-byte little-endian header length and a JSON header that
maps each tensor name to its dtype and shape, so the parameter count, the stored precision and
the names of the linear layers are known from a few kilobytes, without torch. The web process
uses this to register a local model; ``source.model`` uses it for its report.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# A header is a few hundred bytes per tensor; 100 MB would mean a broken or hostile file.
MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
}
# 2-D weights that are not adaptable projections.
NOT_PROJECTIONS = {"embed_tokens", "lm_head", "wte", "wpe", "embed_in", "embed_out", "word_embeddings"}


class ModelFolderError(ValueError):
    """The folder is not a loadable model; the message says why, for the user."""


@dataclass
class ModelInfo:
    path: str
    architecture: str
    model_type: str
    parameters: int
    dtype: str
    size_bytes: int
    hidden_size: int | None = None
    num_layers: int | None = None
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    quantization: dict[str, Any] | None = None
    projection_modules: list[str] = field(default_factory=list)
    has_tokenizer: bool = False
    has_chat_template: bool = False
    weight_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ModelFolderError(f"{path.name} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        if length <= 0 or length > MAX_HEADER_BYTES:
            raise ModelFolderError(f"{path.name} is not a safetensors file (header length {length})")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFolderError(f"{path.name} has an unreadable safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFolderError(f"{path.name} has an unreadable safetensors header")
    return header


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder, single-file or sharded (via the index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFolderError(f"{index.name} is not a valid index ({exc})") from exc
        files = [folder / name for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelFolderError(f"missing weight shards: {', '.join(missing[:5])}")
        return files
    return sorted(folder.glob("*.safetensors"))


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(f"{folder} has no config.json: it is not a model folder")
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"config.json is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelFolderError("config.json is not a JSON object")
    return config


def _count(headers: list[dict[str, Any]]) -> tuple[int, Counter, set[str]]:
    parameters, dtypes, projections = 0, Counter(), set()
    for header in headers:
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            numel = math.prod(entry.get("shape") or [1])
            parameters += numel
            dtypes[DTYPE_NAMES.get(entry.get("dtype", ""), str(entry.get("dtype")).lower())] += numel
            parts = name.split(".")
            is_matrix = len(entry.get("shape") or []) == 2 and parts[-1] == "weight" and len(parts) >= 2
            if is_matrix and parts[-2] not in NOT_PROJECTIONS:
                projections.add(parts[-2])
    return parameters, dtypes, projections


def inspect_model_dir(path: str | Path) -> ModelInfo:
    """Read a model folder's facts; raises ModelFolderError when it cannot be loaded safely."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder")
    config = _read_config(folder)
    files = weight_files(folder)
    if not files:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        if pickled:
            raise ModelFolderError(
                f"the weights ({pickled[0]}) are pickle files, which can run code when loaded; "
                "convert them to safetensors first"
            )
        raise ModelFolderError(f"{folder} has no .safetensors weight files")
    parameters, dtypes, projections = _count([read_safetensors_header(f) for f in files])
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    tokenizer_config = folder / "tokenizer_config.json"
    chat = (folder / "chat_template.jinja").is_file() or (
        tokenizer_config.is_file() and "chat_template" in tokenizer_config.read_text(errors="replace")
    )
    return ModelInfo(
        path=str(folder.resolve()),
        architecture=(config.get("architectures") or [config.get("model_type", "unknown")])[0],
        model_type=str(config.get("model_type", "unknown")),
        parameters=parameters,
        dtype=dtypes.most_common(1)[0][0] if dtypes else "unknown",
        size_bytes=sum(f.stat().st_size for f in files),
        hidden_size=text.get("hidden_size"),
        num_layers=text.get("num_hidden_layers"),
        vocab_size=text.get("vocab_size"),
        max_position_embeddings=text.get("max_position_embeddings"),
        quantization=config.get("quantization_config"),
        projection_modules=sorted(projections),
        has_tokenizer=(folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file(),
        has_chat_template=chat,
        weight_files=[f.name for f in files],
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_count(count: int) -> str:
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= threshold:
            return f"{count / threshold:.1f}{suffix}"
    return str(count)
