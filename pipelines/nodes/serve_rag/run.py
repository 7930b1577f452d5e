"""serve.rag on a worker: assemble the SERVICE folder (see ``pipelines.serving.protocol``)
and prove it answers before anything is published."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, ArtifactRef, NodeFailure
from pipelines.serving.protocol import (
    ADAPTERS_DIR,
    INDEX_DIR,
    AdapterPin,
    ModelPin,
    ServeRequest,
    ServiceConfig,
    ServiceError,
)
from pipelines.types import ArtifactType

SMOKE_QUESTION = "What is this about?"
QUANT_CONFIG = "quantization_config.json"  # written by the quantize node (pipelines.quant.io)


def run(ctx, inputs: dict[str, Any], params) -> dict[str, ArtifactOut]:
    out = Path(ctx.workdir) / "service"
    out.mkdir(parents=True, exist_ok=True)
    index_facts = _copy_index(inputs["index"], out / INDEX_DIR)
    adapters = _copy_adapters(inputs.get("adapters") or [], out / ADAPTERS_DIR, params.adapter_descriptions)
    config = ServiceConfig(
        mode=params.mode,
        prompt_template=params.prompt_template,
        top_k=params.top_k,
        score_threshold=params.score_threshold,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        adapter_routing=params.adapter_routing,
        model=_model_pin(inputs["model"]),
        adapters=adapters,
        index_facts=index_facts,
    )
    config.save(out)
    ctx.progress(0.3, 1, "Service assembled; loading it once to check it answers")
    ctx.check_cancelled()
    _smoke_test(out, ctx)
    ctx.progress(
        1,
        1,
        f"Service ready ({config.mode}, {len(adapters)} adapter(s), {index_facts.get('count', 0)} passages)",
    )
    metadata = {**config.facts(), "model_artifact": config.model.artifact_id if config.model else None}
    return {"service": ArtifactOut(ArtifactType.SERVICE, out, metadata)}


def _copy_index(ref: ArtifactRef, target: Path) -> dict[str, Any]:
    from pipelines.vectorstore.store import read_meta

    if ref.path is None or not Path(ref.path).is_dir():
        raise NodeFailure("The search index input has no files: run the Vectorize step again.")
    try:
        meta = read_meta(Path(ref.path))
    except (FileNotFoundError, ValueError) as exc:
        raise NodeFailure(f"The search index cannot be read: {exc}") from exc
    shutil.copytree(ref.path, target)
    documents = meta.get("documents") or {}
    return {
        "model": meta.get("model"),
        "count": meta.get("count", 0),
        "documents": len(documents),
        "key": ref.key,
        "artifact_id": ref.id,
    }


def adapter_name(ref: ArtifactRef, position: int, taken: set[str]) -> str:
    """The id of the fine-tune node that made the adapter (what descriptions are keyed by)."""
    meta = ref.metadata or {}
    raw = getattr(ref, "node", "") or meta.get("node") or meta.get("node_id") or f"adapter-{position + 1}"
    name = re.sub(r"[^A-Za-z0-9_-]", "-", str(raw))[:64] or f"adapter-{position + 1}"
    base, n = name, 2
    while name in taken or name == "base":
        name = f"{base[:60]}-{n}"
        n += 1
    taken.add(name)
    return name


def _copy_adapters(refs: list[ArtifactRef], target: Path, descriptions: dict[str, str]) -> list[AdapterPin]:
    pins: list[AdapterPin] = []
    taken: set[str] = set()
    for position, ref in enumerate(refs):
        if ref.path is None or not Path(ref.path).is_dir():
            raise NodeFailure(f"Adapter {position + 1} has no files: run its fine-tune step again.")
        name = adapter_name(ref, position, taken)
        source = Path(ref.path)
        fmt = (ref.metadata or {}).get("format") or (
            "peft" if (source / "adapter_config.json").is_file() else "full_model"
        )
        if fmt == "peft" and not (source / "adapter_config.json").is_file():
            raise NodeFailure(f"Adapter {name} is not a PEFT adapter folder (no adapter_config.json).")
        shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("merged", "checkpoint-*"))
        pins.append(
            AdapterPin(
                name=name,
                path=f"{ADAPTERS_DIR}/{name}",
                description=descriptions.get(name, ""),
                key=ref.key,
                format=fmt,
            )
        )
    return pins


def _model_pin(ref: ArtifactRef) -> ModelPin:
    meta = dict(ref.metadata or {})
    path = str(ref.path) if ref.path else meta.get("model_path")
    return ModelPin(
        artifact_id=ref.id, key=ref.key, path=path, metadata=meta, quantized=is_quantized(meta, path)
    )


def is_quantized(meta: dict[str, Any], path: str | None) -> bool:
    """Saved by the quantize node (its own loader reads it). A hub model that ships its own
    quantization (GPTQ, bitsandbytes...) loads through transformers and is not this."""
    if path and (Path(path) / QUANT_CONFIG).is_file():
        return True
    quantization = meta.get("quantization")
    return isinstance(quantization, dict) and quantization.get("config_file") == QUANT_CONFIG


def _smoke_test(folder: Path, ctx) -> None:
    """Load the service as a serve worker will and answer one short question: a broken model,
    adapter or index fails here, on the run page, not later on the endpoint."""
    from pipelines.serving.service import RagService

    try:
        service = RagService.load(folder, device=ctx.device if str(ctx.device).startswith("cuda") else "cpu")
        service.answer(ServeRequest(request_id="smoke", query=SMOKE_QUESTION, max_tokens=4, temperature=0.0))
    except (ServiceError, OSError, ValueError) as exc:
        raise NodeFailure(f"The service does not answer: {exc}") from exc
