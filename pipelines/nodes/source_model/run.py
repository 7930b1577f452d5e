"""source.model: resolve "demo", a hub id or a folder to model weights on this worker.

The platform answers ``ctx.resource("model", ref)`` with where the model lives and what is
allowed (a local folder only inside the configured model roots; ``trust_remote_code`` only
when an administrator allowed it). The weights are not copied: the MODEL artifact's metadata
points at the folder (``model_path``), and downstream nodes on another worker re-resolve it
from ``source`` / ``hub_id`` (see ``pipelines.ml.loading.model_folder``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.ml.modelinfo import ModelFolderError, human_count, human_size, inspect_model_dir
from pipelines.types import ArtifactType


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    resource: dict[str, Any] = ctx.resource("model", params.model)
    if params.trust_remote_code and not resource.get("trust_remote_code_allowed"):
        raise NodeFailure(
            "trust_remote_code: running a model's own code is not allowed on this platform; "
            "an administrator must enable it (LLMOPS_ALLOW_TRUST_REMOTE_CODE)"
        )
    folder = _materialise(ctx, resource, params)
    try:
        info = inspect_model_dir(folder)
    except ModelFolderError as exc:
        raise NodeFailure(f"model: {exc}") from exc
    ctx.progress(
        1,
        1,
        f"{info.architecture}, {human_count(info.parameters)} parameters, {info.dtype}, "
        f"{human_size(info.size_bytes)}",
    )
    ctx.log(
        f"model {params.model!r} at {folder}: {info.architecture}, {info.parameters:,} parameters, "
        f"stored as {info.dtype}, {human_size(info.size_bytes)}"
    )
    metadata = {
        "name": resource.get("name") or params.model,
        "ref": params.model,
        "source": resource["source"],
        "model_path": str(folder),
        "hub_id": resource.get("hub_id"),
        "revision": params.revision,
        "dtype": params.dtype,
        "precision": info.dtype if params.dtype == "auto" else params.dtype,
        "quantization": info.quantization,
        "trust_remote_code": bool(params.trust_remote_code),
        "architecture": info.architecture,
        "model_type": info.model_type,
        "parameters": info.parameters,
        "size_bytes": info.size_bytes,
        "hidden_size": info.hidden_size,
        "num_layers": info.num_layers,
        "vocab_size": info.vocab_size,
        "max_position_embeddings": info.max_position_embeddings,
        "projection_modules": info.projection_modules,
        "has_chat_template": info.has_chat_template,
        "demo_steps": resource.get("demo_steps"),
    }
    return {"model": ArtifactOut(ArtifactType.MODEL, None, metadata)}


def _materialise(ctx, resource: dict[str, Any], params) -> Path:
    source = resource.get("source")
    if source == "demo":
        from pipelines.ml.demo import DemoConfig, build_demo_model, is_built

        folder = Path(resource["path"])
        if not is_built(folder):
            ctx.log("the demo model is not built yet: building it now (about a minute, once)")
            steps = int(resource.get("demo_steps") or DemoConfig.steps)
            build_demo_model(folder, DemoConfig(steps=steps), progress=ctx.progress)
        return folder
    if source == "local":
        folder = Path(resource["path"])
        if not folder.is_dir():
            raise NodeFailure(f"model: the folder {folder} does not exist on this worker")
        return folder
    if source == "hub":
        from pipelines.ml.loading import hub_snapshot

        return hub_snapshot(
            resource["hub_id"],
            revision=params.revision,
            progress=ctx.progress,
            cache_dir=resource.get("cache_dir"),
        )
    raise NodeFailure(f"model: cannot resolve {params.model!r}")
