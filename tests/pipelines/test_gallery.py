"""The template gallery: the required templates exist, are laid out left to right, and only
ask the user for what only the user can choose."""

from __future__ import annotations

from pipelines.gallery import TEMPLATES, fill_sources, get_template
from pipelines.graph import Graph
from pipelines.validation import validate_graph

REQUIRED = {
    "Q&A over my documents (API)",
    "Fine-tune, quantize and serve",
    "Compare LoRA and QLoRA",
    "Text classification with LoRA",
    "Instruction-tune a chat model",
}


def test_required_templates_exist():
    assert {t["name"] for t in TEMPLATES} >= REQUIRED
    assert len({t["slug"] for t in TEMPLATES}) == len(TEMPLATES)
    assert all(t["description"] for t in TEMPLATES)


def test_template_is_laid_out_left_to_right(template):
    graph = Graph.model_validate(template["graph"])
    assert graph.to_json() == template["graph"]
    x = {node.id: node.position[0] for node in graph.nodes}
    assert all(x[e.source_node] < x[e.target_node] for e in graph.edges)
    positions = [tuple(node.position) for node in graph.nodes]
    assert len(set(positions)) == len(positions), "nodes overlap"


def test_template_asks_only_for_collections_and_datasets(template):
    report = validate_graph(template["graph"])
    asked = {(i.code, i.field) for i in report.errors}
    assert asked <= {("missing_param", "collection"), ("missing_param", "dataset")}
    assert validate_graph(fill_sources(template["graph"], collection=4, dataset=5)).ok


def test_qa_template_is_the_newcomer_pipeline():
    graph = Graph.model_validate(get_template("qa-over-documents")["graph"])
    kinds = {node.kind for node in graph.nodes}
    assert kinds == {"source.documents", "vectorize.faiss", "serve.rag", "source.model", "publish.api"}


def test_compare_template_has_lora_qlora_and_ternary():
    graph = Graph.model_validate(get_template("compare-lora-qlora")["graph"])
    methods = sorted(n.params["method"] for n in graph.nodes if n.kind in ("train.lora", "quantize"))
    assert methods == ["lora", "qlora", "ternary_b158"]
    assert sum(n.kind == "evaluate" for n in graph.nodes) == 3


def test_get_template_returns_a_copy():
    first = get_template("qa-over-documents")
    first["graph"]["nodes"].clear()
    assert get_template("qa-over-documents")["graph"]["nodes"]
