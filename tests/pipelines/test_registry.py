"""The registry: every kind has a complete spec, a form-able params model, an implementation
module and a test; extra kinds come from LLMOPS_EXTRA_NODE_MODULES."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines import registry
from pipelines.nodes.source_model.spec import DEMO_MODEL_FACTS
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

ROOT = Path(__file__).resolve().parents[2]
KINDS = [
    "source.documents",
    "source.dataset",
    "source.model",
    "vectorize.faiss",
    "quantize",
    "train.lora",
    "evaluate",
    "serve.rag",
    "publish.api",
]
QUEUES = {
    "source.documents": "cpu",
    "source.dataset": "cpu",
    "source.model": "cpu",
    "publish.api": "cpu",
    "vectorize.faiss": "gpu",
    "quantize": "gpu",
    "train.lora": "gpu",
    "evaluate": "gpu",
    "serve.rag": "serve",
}
SCHEMA_TYPES = ("type", "enum", "anyOf", "$ref", "const", "allOf")


def folder(kind: str) -> str:
    return kind.replace(".", "_")


def test_the_nine_kinds_in_palette_order():
    assert registry.kinds()[: len(KINDS)] == KINDS
    assert [s.kind for s in registry.all_specs()][: len(KINDS)] == KINDS
    with pytest.raises(KeyError):
        registry.get_spec("no.such.kind")


@pytest.mark.parametrize("kind", KINDS)
def test_spec_is_complete(kind):
    spec = registry.get_spec(kind)
    assert spec is importlib.import_module(f"pipelines.nodes.{folder(kind)}.spec").SPEC
    assert spec.queue == QUEUES[kind]
    assert spec.category in registry.CATEGORIES
    assert spec.label and spec.description and len(spec.help) > 80 and spec.icon
    assert spec.implementation == f"pipelines.nodes.{folder(kind)}.run:run"
    assert spec.outputs, "every kind produces something"
    names = [p.name for p in spec.inputs] + [p.name for p in spec.outputs]
    assert len(set(p.name for p in spec.inputs)) == len(spec.inputs)
    assert all(isinstance(p.type, ArtifactType) for p in (*spec.inputs, *spec.outputs)), names
    assert json.loads(json.dumps(spec.to_dict()))["kind"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_params_model_is_a_form(kind):
    spec = registry.get_spec(kind)
    assert issubclass(spec.params, BaseModel)
    assert spec.params.model_config.get("extra") == "forbid"
    for name, info in spec.params.model_fields.items():
        assert info.title, f"{kind}.{name} has no title"
        assert info.description and len(info.description) > 15, f"{kind}.{name} needs a plain description"
    schema = json.loads(json.dumps(spec.json_schema()))
    for name, prop in schema["properties"].items():
        assert prop.get("title") and prop.get("description"), name
        assert any(key in prop for key in SCHEMA_TYPES), f"{kind}.{name}: the form cannot render {prop}"
        for value in prop.get("x-choices", {}):
            assert value in json.dumps(prop), f"{kind}.{name}: choice {value} is not an allowed value"
    # the defaults (plus a value for each required field) are valid params
    required = {name: 1 for name in schema.get("required", [])}
    spec.params.model_validate({**spec.default_params(), **required})


# Kinds whose implementation lands with a later issue (see the open issues).
PENDING_IMPLEMENTATIONS: set[str] = set()


@pytest.mark.parametrize("kind", KINDS)
def test_implementation_module_exists(kind):
    # Found, not imported: implementations import torch & co. and belong to the workers.
    module = registry.get_spec(kind).implementation.partition(":")[0]
    found = importlib.util.find_spec(module) is not None
    if kind in PENDING_IMPLEMENTATIONS:
        # Keep the list honest: once a kind gets its run.py it must leave the list.
        assert not found, f"{kind} now has {module}: remove it from PENDING_IMPLEMENTATIONS"
    else:
        assert found, f"{module} is missing"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_mentioned_by_a_test(kind):
    mentions = [
        path
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.name != "test_registry.py" and f'"{kind}"' in path.read_text(encoding="utf-8")
    ]
    assert mentions, f"no test mentions {kind!r}"


def test_specs_do_not_import_heavy_libraries():
    code = (
        "import sys; from pipelines import registry, validation, gallery; registry.all_specs();"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'faiss', 'numpy', 'django', 'celery')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


def test_register_and_unregister():
    class Params(BaseModel):
        pass

    spec = NodeSpec(
        kind="test.echo",
        label="Echo",
        category="Testing",
        description="d",
        help="h",
        icon="e",
        queue="cpu",
        params=Params,
        outputs=(Port("report", ArtifactType.REPORT),),
    )
    try:
        assert registry.register(spec) is spec
        assert registry.get_spec("test.echo") is spec and registry.kinds()[-1] == "test.echo"
        assert "Testing" in registry.specs_by_category()
    finally:
        registry.unregister("test.echo")
    assert registry.find_spec("test.echo") is None


def test_extra_modules_from_the_environment(tmp_path):
    (tmp_path / "extra_kinds.py").write_text(
        "from pydantic import BaseModel\n"
        "from pipelines.registry import register\n"
        "from pipelines.spec import NodeSpec, Port\n"
        "from pipelines.types import ArtifactType\n"
        "class P(BaseModel):\n    pass\n"
        "SPEC = register(NodeSpec(kind='test.extra', label='Extra', category='Testing', description='d',\n"
        "    help='h', icon='x', queue='cpu', params=P, outputs=(Port('report', ArtifactType.REPORT),)))\n"
    )
    code = "from pipelines import registry; print(registry.kinds()[-1], len(registry.kinds()))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        registry.EXTRA_MODULES_ENV: " extra_kinds ,",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["test.extra", str(len(KINDS) + 1)]


def test_demo_model_facts_match_the_demo_builder():
    demo = pytest.importorskip("pipelines.ml.demo")
    config = demo.DemoConfig()
    h, layers, vocab, inter = (
        config.hidden_size,
        config.num_layers,
        config.vocab_size,
        config.intermediate_size,
    )
    # embeddings + lm_head, and per layer q/k/v/o, gate/up/down and two norms, plus the final norm
    params = 2 * vocab * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h
    assert (DEMO_MODEL_FACTS.hidden, DEMO_MODEL_FACTS.layers, DEMO_MODEL_FACTS.vocab) == (h, layers, vocab)
    assert DEMO_MODEL_FACTS.context == config.max_position_embeddings
    assert abs(DEMO_MODEL_FACTS.params - params) / params < 0.05
