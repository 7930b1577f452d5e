"""The "serve.rag" node: assembles a self-contained SERVICE folder and proves it answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.context import ArtifactRef, NodeFailure
from pipelines.nodes.serve_rag.run import adapter_name, run
from pipelines.nodes.serve_rag.spec import ServeRagParams
from pipelines.registry import get_spec
from pipelines.serving.protocol import SERVICE_FILE, ServiceConfig
from pipelines.types import ArtifactType
from tests.pipelines.serving import toys


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-rag-node")
    model = toys.build_model(root / "model")
    return {
        "model": model,
        "index": toys.build_index(root / "index"),
        "adapter": toys.build_adapter(model, root / "adapter", seed=3),
    }


def refs(parts, **extra):
    inputs = {
        "model": ArtifactRef(ArtifactType.MODEL, parts["model"], {"name": "tiny"}, key="mkey", id=11),
        "index": ArtifactRef(ArtifactType.VECTOR_INDEX, parts["index"], {}, key="ikey", id=12),
    }
    inputs.update(extra)
    return inputs


def test_spec_points_at_this_implementation():
    spec = get_spec("serve.rag")
    assert spec.load_implementation() is run
    assert spec.queue == "serve"


def test_builds_a_self_contained_service(parts, tmp_path):
    adapter = ArtifactRef(
        ArtifactType.ADAPTER, parts["adapter"], {"format": "peft", "node": "finetune"}, key="akey"
    )
    params = ServeRagParams.model_validate(
        {
            "mode": "generate",
            "max_tokens": 8,
            "top_k": 3,
            "adapter_descriptions": {"finetune": "questions about invoices"},
        }
    )
    ctx = toys.ToyContext(tmp_path)
    out = run(ctx, refs(parts, adapters=[adapter]), params)["service"]
    folder = Path(out.path)
    assert out.type == ArtifactType.SERVICE
    assert (folder / SERVICE_FILE).is_file()
    assert (folder / "index" / "index.faiss").is_file() and (folder / "index" / "chunks.jsonl").is_file()
    assert (folder / "adapters" / "finetune" / "adapter_config.json").is_file()
    config = ServiceConfig.load(folder)
    assert config.model.artifact_id == 11 and config.model.key == "mkey" and not config.model.quantized
    assert [(a.name, a.description) for a in config.adapters] == [("finetune", "questions about invoices")]
    assert config.top_k == 3 and config.max_tokens == 8
    # Metadata for the web: facts, no paths.
    assert out.metadata["mode"] == "generate" and out.metadata["adapters"][0]["name"] == "finetune"
    assert "path" not in json.dumps(out.metadata)
    assert ctx.events[-1][0] == 1  # finished progress


def test_a_quantized_model_is_pinned_as_such(parts, tmp_path):
    model = ArtifactRef(
        ArtifactType.MODEL,
        parts["model"],
        {"quantization": {"config_file": "quantization_config.json"}},
        key="q",
        id=5,
    )
    params = ServeRagParams.model_validate({"mode": "extractive"})
    out = run(toys.ToyContext(tmp_path), refs(parts, model=model), params)["service"]
    assert ServiceConfig.load(Path(out.path)).model.quantized is True
    # A model that is merely described as quantized by its hub config is not the quantize node's.
    plain = ArtifactRef(ArtifactType.MODEL, parts["model"], {"quantization": None}, key="p", id=6)
    out = run(toys.ToyContext(tmp_path / "plain"), refs(parts, model=plain), params)["service"]
    assert ServiceConfig.load(Path(out.path)).model.quantized is False


def test_a_missing_index_is_a_clear_failure(parts, tmp_path):
    index = ArtifactRef(ArtifactType.VECTOR_INDEX, tmp_path / "nothing", {}, key="x")
    with pytest.raises(NodeFailure, match="search index"):
        run(toys.ToyContext(tmp_path / "w"), refs(parts, index=index), ServeRagParams.model_validate({}))


def test_a_broken_adapter_fails_the_node_not_the_endpoint(parts, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    adapter = ArtifactRef(ArtifactType.ADAPTER, broken, {"format": "peft"}, key="b")
    with pytest.raises(NodeFailure, match="does not answer"):
        run(
            toys.ToyContext(tmp_path / "w"),
            refs(parts, adapters=[adapter]),
            ServeRagParams.model_validate({"mode": "generate"}),
        )


def test_adapter_names_are_unique_and_safe():
    taken: set[str] = set()
    ref = ArtifactRef(ArtifactType.ADAPTER, Path("/x"), {"node": "fine tune/1"})
    assert adapter_name(ref, 0, taken) == "fine-tune-1"
    assert adapter_name(ref, 1, taken) == "fine-tune-1-2"
    assert adapter_name(ArtifactRef(ArtifactType.ADAPTER, Path("/x"), {}), 2, taken) == "adapter-3"
    assert adapter_name(ArtifactRef(ArtifactType.ADAPTER, Path("/x"), {"node": "base"}), 3, taken) == "base-2"
