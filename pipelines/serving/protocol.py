"""What a RAG service is on disk and what a request and an answer look like.

Pure Python (pydantic only): the web validates requests with it and reads a service's facts
without importing torch. The heavy parts (retrieval, generation) live in sibling modules.

A SERVICE artifact is a folder:

    service.json   this module's ``ServiceConfig``: mode, prompt template, retrieval and
                   generation defaults, the pinned model (artifact id/key, path, metadata),
                   the adapters with their descriptions
    index/         the vector index (index.faiss, chunks.jsonl, meta.json), copied in
    adapters/<n>/  each PEFT adapter (adapter_config.json, adapter_model.safetensors)

The index and the adapters are small and copied, so the folder is self-contained; the base
model can be gigabytes, so it is pinned by reference (its artifact) and resolved on the worker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

SERVICE_FILE = "service.json"
SERVICE_FORMAT = "llmops.service/1"
INDEX_DIR = "index"
ADAPTERS_DIR = "adapters"

# Request limits. A question is a sentence or a paragraph, not a document: 4,000 characters
# is about 1,000 tokens, already more than the demo model's whole context.
MAX_QUERY_CHARS = 4000
MAX_TOKENS_CAP = 4096
MAX_TEMPERATURE = 2.0
ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BASE_ADAPTER = "base"  # a request may name it to skip every adapter


class ModelPin(BaseModel):
    """The base model a service answers with: the artifact it came from, and where it was."""

    model_config = ConfigDict(extra="ignore")

    artifact_id: int | None = None
    key: str = ""
    path: str | None = None  # the folder on the worker that built the service
    metadata: dict[str, Any] = Field(default_factory=dict)
    quantized: bool = False


class AdapterPin(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    path: str  # relative to the service folder
    description: str = ""
    key: str = ""
    format: str = "peft"  # "peft" or "full_model"


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str = SERVICE_FORMAT
    mode: Literal["generate", "extractive"] = "generate"
    prompt_template: str
    top_k: int = 4
    score_threshold: float = 0.0
    max_tokens: int = 256
    temperature: float = 0.7
    adapter_routing: Literal["auto", "named"] = "auto"
    model: ModelPin | None = None
    adapters: list[AdapterPin] = Field(default_factory=list)
    index: str = INDEX_DIR
    index_facts: dict[str, Any] = Field(default_factory=dict)  # model, count, documents

    def save(self, folder: Path) -> Path:
        path = Path(folder) / SERVICE_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, folder: Path) -> ServiceConfig:
        path = Path(folder) / SERVICE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServiceError(f"{path}: not a service folder ({exc})") from exc
        if data.get("format") != SERVICE_FORMAT:
            raise ServiceError(f"{path}: unknown service format {data.get('format')!r}")
        return cls.model_validate(data)

    def adapter(self, name: str) -> AdapterPin | None:
        return next((a for a in self.adapters if a.name == name), None)

    def facts(self) -> dict[str, Any]:
        """What the web needs to know (kept in the artifact's metadata): no paths."""
        return {
            "format": SERVICE_FORMAT,
            "mode": self.mode,
            "top_k": self.top_k,
            "score_threshold": self.score_threshold,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "adapter_routing": self.adapter_routing,
            "adapters": [{"name": a.name, "description": a.description} for a in self.adapters],
            "model": (self.model.metadata.get("name") if self.model else None) or "",
            "model_key": self.model.key if self.model else "",
            "quantized": bool(self.model and self.model.quantized),
            "index": self.index_facts,
        }


class ServiceError(RuntimeError):
    """A service folder that cannot be read or used; the message says what is wrong."""


class QueryIn(BaseModel):
    """The body of ``POST /api/v1/endpoints/{slug}/query``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question.")
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS_CAP,
        description="Longest answer in tokens; at most the service's own limit. Default: the service's.",
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=MAX_TEMPERATURE,
        description="0 gives the most likely words; higher varies more. Default: the service's.",
    )
    adapter: str | None = Field(
        None,
        pattern=ADAPTER_NAME_RE.pattern,
        description='Name of the fine-tuned adapter to answer with ("base" for none); '
        "default: the service's routing.",
    )
    stream: bool = Field(False, description="Send the answer as server-sent events while it is written.")


@dataclass
class HostedConfig:
    """An OpenAI-compatible API that writes the answers instead of the local model."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0


@dataclass
class ServeRequest:
    request_id: str
    query: str
    max_tokens: int | None = None
    temperature: float | None = None
    adapter: str | None = None
    stream: bool = False
    hosted: HostedConfig | None = None


class Sink(Protocol):
    """Where a request's answer goes: a Redis list on workers, a list in memory in-process."""

    def delta(self, text: str) -> None: ...

    def done(self, result: dict[str, Any]) -> None: ...

    def error(self, status: int, message: str) -> None: ...

    def cancelled(self) -> bool: ...


class CollectingSink:
    """Keeps everything in memory (in-process calls, tests, benchmarks)."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.result: dict[str, Any] | None = None
        self.failure: tuple[int, str] | None = None
        self.cancel = False

    def delta(self, text: str) -> None:
        self.deltas.append(text)

    def done(self, result: dict[str, Any]) -> None:
        self.result = result

    def error(self, status: int, message: str) -> None:
        self.failure = (status, message)

    def cancelled(self) -> bool:
        return self.cancel

    def unwrap(self) -> dict[str, Any]:
        if self.failure is not None:
            raise ServiceError(f"{self.failure[0]}: {self.failure[1]}")
        if self.result is None:
            raise ServiceError("the service gave no answer")
        return self.result


def effective_max_tokens(requested: int | None, service_max: int) -> int:
    """A request may ask for fewer tokens than the service's limit, never more."""
    return max(1, min(requested or service_max, service_max))


def effective_temperature(requested: float | None, default: float) -> float:
    value = default if requested is None else requested
    return max(0.0, min(float(value), MAX_TEMPERATURE))
