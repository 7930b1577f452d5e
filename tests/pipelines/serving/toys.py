"""Tiny real parts for serving tests and benchmarks: a Llama built like the demo model (only
smaller), a real MiniLM FAISS index over a few documents, real PEFT LoRA adapters, and the
service folder the real ``serve.rag`` node makes from them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCUMENTS = {
    "invoices.md": (
        "# Paying invoices\n\nEvery invoice must be paid by bank transfer within 30 days of its date. "
        "The billing team sends a reminder after 20 days and charges a late fee of 2 percent after 45 days. "
        "Refunds for double payments are made to the original account within a week.\n"
    ),
    "hiking.md": (
        "# Mountain hiking\n\nThe trail to the summit starts at the blue lake car park "
        "and climbs 900 metres. "
        "Bring two litres of water, boots with a good grip and a warm jacket: the wind at the top is cold. "
        "The hut near the ridge serves soup from June to September.\n"
    ),
    "llamas.md": (
        "# Caring for llamas\n\nLlamas eat hay and grass and need fresh water every day. Shear their wool "
        "once a year in spring. They live in herds, so never keep a single llama alone.\n"
    ),
}

ADAPTERS = {
    "billing": "questions about invoices, payments, refunds and billing",
    "outdoors": "questions about hiking trails, mountains, weather and the outdoors",
}


def tiny_config():
    from pipelines.ml.demo import DemoConfig

    return DemoConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=256,
        steps=20,
        seq_len=32,
        batch_size=8,
    )


def slow_config():
    """Untrained and wider, with a long context: greedy decoding runs to the token limit and each
    token takes milliseconds, so a test can hang up in the middle of an answer."""
    from pipelines.ml.demo import DemoConfig

    return DemoConfig(
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        intermediate_size=1024,
        vocab_size=512,
        max_position_embeddings=2048,
        steps=0,
    )


def build_model(folder: Path, config=None) -> Path:
    from pipelines.ml.demo import build_demo_model

    build_demo_model(folder, config or tiny_config())
    return Path(folder)


def build_index(folder: Path, documents: dict[str, str] | None = None, *, chunk_size: int = 64) -> Path:
    from pipelines.vectorstore import BuildSettings, SourceDocument, sync_index

    documents = documents or DOCUMENTS
    source_dir = Path(folder).parent / (Path(folder).name + "-sources")
    source_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    for number, (name, text) in enumerate(documents.items(), start=1):
        path = source_dir / name
        path.write_text(text, encoding="utf-8")
        sources.append(
            SourceDocument(
                id=number,
                name=name,
                sha256=hashlib.sha256(text.encode()).hexdigest(),
                kind="",
                path=str(path),
            )
        )
    sync_index(
        documents=sources,
        settings=BuildSettings(chunk_size=chunk_size, chunk_overlap=8),
        out_dir=Path(folder),
    )
    return Path(folder)


def build_adapter(model_folder: Path, out: Path, *, seed: int) -> Path:
    """A LoRA adapter with strong random weights, so each adapter visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_folder))
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(str(out))
    return Path(out)


class ToyContext:
    """A NodeContext for calling node implementations directly."""

    def __init__(self, workdir: Path, device: str = "cpu"):
        self.node_id, self.run_id, self.workspace_id = "serve", 1, 1
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.events: list[tuple[Any, ...]] = []

    def progress(self, done, total=None, message="", **metrics):
        self.events.append((done, total, message))

    def log(self, message, level="info"):
        self.events.append(("log", level, message))

    def metric(self, name, value, step=None):
        pass

    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        return None

    def resource(self, kind, ref):
        raise LookupError(kind)


def build_service(
    workdir: Path,
    *,
    model: Path,
    index: Path,
    adapters: dict[str, Path] | None = None,
    descriptions: dict[str, str] | None = None,
    model_metadata: dict[str, Any] | None = None,
    **params: Any,
) -> Path:
    """Run the real serve.rag node on these parts; returns the SERVICE folder."""
    from pipelines.context import ArtifactRef
    from pipelines.nodes.serve_rag.run import run
    from pipelines.nodes.serve_rag.spec import ServeRagParams
    from pipelines.types import ArtifactType

    inputs: dict[str, Any] = {
        "model": ArtifactRef(
            ArtifactType.MODEL,
            Path(model),
            model_metadata or {"name": "tiny", "model_path": str(model)},
            key="m1",
        ),
        "index": ArtifactRef(ArtifactType.VECTOR_INDEX, Path(index), {}, key="i1", id=None),
    }
    if adapters:
        inputs["adapters"] = [
            ArtifactRef(ArtifactType.ADAPTER, Path(path), {"format": "peft", "node": name}, key=f"a-{name}")
            for name, path in adapters.items()
        ]
    if descriptions is not None:
        params["adapter_descriptions"] = descriptions
    outputs = run(ToyContext(workdir), inputs, ServeRagParams.model_validate(params))
    return Path(outputs["service"].path)
