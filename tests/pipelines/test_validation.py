"""Table-driven validation: one valid graph per template, one invalid graph per error code,
each asserting the code, the node id and the field (or edge) the problem is addressed to."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from pipelines.gallery import fill_sources, get_template
from pipelines.graph import MAX_EDGES, MAX_NODES
from pipelines.resources import DeviceProfile
from pipelines.validation import GraphInvalid, check_connection, parse_graph, validate_graph


def filled(graph: dict) -> dict:
    return fill_sources(graph, collection=1, dataset=2)


def qa() -> dict:
    return filled(get_template("qa-over-documents")["graph"])


def training() -> dict:
    """dataset + demo model -> train.lora -> evaluate."""
    return filled(get_template("text-classification-lora")["graph"])


def node(graph: dict, node_id: str) -> dict:
    return next(n for n in graph["nodes"] if n["id"] == node_id)


def edge(a: str, ap: str, b: str, bp: str) -> dict:
    return {"from": [a, ap], "to": [b, bp]}


def with_(base: Callable[[], dict], change: Callable[[dict], Any]) -> Callable[[], dict]:
    def build() -> dict:
        graph = base()
        change(graph)
        return graph

    return build


def _drop_edge(graph: dict, target: list) -> None:
    graph["edges"] = [e for e in graph["edges"] if e["to"] != target]


def _loop(graph: dict) -> None:
    graph["nodes"] += [{"id": "q1", "kind": "quantize"}, {"id": "q2", "kind": "quantize"}]
    graph["edges"] += [edge("q1", "model", "q2", "model"), edge("q2", "model", "q1", "model")]


def _big_model(graph: dict, method: str) -> None:
    node(graph, "model")["params"]["model"] = "meta-llama/Llama-2-7b-hf"
    node(graph, "train")["params"].update(method=method, batch_size=1, max_seq_length=512)


T4 = DeviceProfile("t4-16gb", "cuda", 15 * 1024**3)

# (case id, graph or raw data builder, code, node, field, edge, validate_graph kwargs)
ERROR_CASES: list[tuple[str, Callable[[], Any], str, str | None, str | None, int | None, dict]] = [
    ("not json", lambda: '{"version": 1, "nodes": [', "invalid_json", None, None, None, {}),
    ("not utf-8", lambda: b"\xff\xfe{}", "invalid_json", None, None, None, {}),
    ("a list", lambda: [1, 2], "malformed", None, None, None, {}),
    (
        "unknown top-level field",
        with_(qa, lambda g: g.update(colour="red")),
        "malformed",
        None,
        "colour",
        None,
        {},
    ),
    ("version 2", with_(qa, lambda g: g.update(version=2)), "malformed", None, "version", None, {}),
    ("nodes not a list", lambda: {"version": 1, "nodes": {}}, "malformed", None, "nodes", None, {}),
    (
        "node id with a space",
        with_(qa, lambda g: node(g, "api").update(id="my api")),
        "malformed",
        "my api",
        "id",
        None,
        {},
    ),
    (
        "node without kind",
        with_(qa, lambda g: node(g, "api").pop("kind")),
        "malformed",
        "api",
        "kind",
        None,
        {},
    ),
    (
        "node with unknown field",
        with_(qa, lambda g: node(g, "api").update(size=3)),
        "malformed",
        "api",
        "size",
        None,
        {},
    ),
    (
        "edge of the wrong shape",
        with_(qa, lambda g: g["edges"][1].update({"from": "index"})),
        "malformed",
        None,
        "from",
        1,
        {},
    ),
    (
        "5,000 nodes",
        lambda: {"version": 1, "nodes": [{"id": f"n{i}", "kind": "quantize"} for i in range(5000)]},
        "too_many_nodes",
        None,
        "nodes",
        None,
        {},
    ),
    (
        "too many edges",
        lambda: {"version": 1, "nodes": [], "edges": [edge("a", "b", "c", "d")] * (MAX_EDGES + 1)},
        "too_many_edges",
        None,
        "edges",
        None,
        {},
    ),
    (
        "duplicate node id",
        with_(qa, lambda g: g["nodes"].append({"id": "docs", "kind": "source.documents"})),
        "duplicate_node_id",
        "docs",
        "id",
        None,
        {},
    ),
    (
        "unknown kind",
        with_(qa, lambda g: g["nodes"].append({"id": "x", "kind": "vectorize.faiss2"})),
        "unknown_kind",
        "x",
        "kind",
        None,
        {},
    ),
    (
        "collection not chosen",
        with_(qa, lambda g: node(g, "docs")["params"].clear()),
        "missing_param",
        "docs",
        "collection",
        None,
        {},
    ),
    (
        "chunk size out of bounds",
        with_(qa, lambda g: node(g, "index")["params"].update(chunk_size=0)),
        "invalid_param",
        "index",
        "chunk_size",
        None,
        {},
    ),
    (
        "overlap not below size",
        with_(qa, lambda g: node(g, "index")["params"].update(chunk_size=64, chunk_overlap=64)),
        "invalid_param",
        "index",
        "chunk_overlap",
        None,
        {},
    ),
    (
        "template without {question}",
        with_(qa, lambda g: node(g, "rag")["params"].update(prompt_template="{context}")),
        "invalid_param",
        "rag",
        "prompt_template",
        None,
        {},
    ),
    (
        "rank 0",
        with_(training, lambda g: node(g, "train")["params"].update(r=0)),
        "invalid_param",
        "train",
        "r",
        None,
        {},
    ),
    (
        "batch size neither number nor auto",
        with_(training, lambda g: node(g, "train")["params"].update(batch_size="x")),
        "invalid_param",
        "train",
        "batch_size",
        None,
        {},
    ),
    (
        "bad slug",
        with_(qa, lambda g: node(g, "api")["params"].update(slug="Not A Slug!")),
        "invalid_param",
        "api",
        "slug",
        None,
        {},
    ),
    (
        "unknown param",
        with_(qa, lambda g: node(g, "index")["params"].update(chunk_sise=100)),
        "unknown_param",
        "index",
        "chunk_sise",
        None,
        {},
    ),
    (
        "edge from a missing node",
        with_(qa, lambda g: g["edges"].append(edge("ghost", "model", "rag", "model"))),
        "unknown_node",
        None,
        "from",
        4,
        {},
    ),
    (
        "edge to an unknown port",
        with_(qa, lambda g: g["edges"].append(edge("model", "model", "rag", "modle"))),
        "unknown_port",
        "rag",
        "modle",
        4,
        {},
    ),
    (
        "edge from an input port",
        with_(qa, lambda g: g["edges"].append(edge("rag", "index", "api", "service"))),
        "unknown_port",
        "rag",
        "index",
        4,
        {},
    ),
    (
        "incompatible types",
        with_(qa, lambda g: g["edges"].append(edge("model", "model", "index", "documents"))),
        "type_mismatch",
        "index",
        "documents",
        4,
        {},
    ),
    (
        "required input not connected",
        with_(qa, lambda g: _drop_edge(g, ["rag", "index"])),
        "missing_input",
        "rag",
        "index",
        None,
        {},
    ),
    (
        "two edges into a single port",
        with_(
            qa,
            lambda g: (
                g["nodes"].append({"id": "model2", "kind": "source.model"}),
                g["edges"].append(edge("model2", "model", "rag", "model")),
            ),
        ),
        "multiple_inputs",
        "rag",
        "model",
        4,
        {},
    ),
    (
        "the same edge twice",
        with_(qa, lambda g: g["edges"].append(dict(g["edges"][0]))),
        "duplicate_edge",
        "index",
        "documents",
        4,
        {},
    ),
    ("a loop", with_(qa, _loop), "cycle", "q1", None, None, {}),
    (
        "a node wired to itself",
        with_(
            qa,
            lambda g: (
                g["nodes"].append({"id": "q", "kind": "quantize"}),
                g["edges"].append(edge("q", "model", "q", "model")),
            ),
        ),
        "cycle",
        "q",
        None,
        4,
        {},
    ),
    (
        "remote code not allowed",
        with_(qa, lambda g: node(g, "model")["params"].update(trust_remote_code=True)),
        "remote_code_not_allowed",
        "model",
        "trust_remote_code",
        None,
        {},
    ),
    (
        "longer than the model's context",
        with_(training, lambda g: node(g, "train")["params"].update(max_seq_length=4096)),
        "exceeds_context",
        "train",
        "max_seq_length",
        None,
        {},
    ),
]

WARNING_CASES = [
    (
        "7B full fine-tune on a T4",
        with_(training, lambda g: _big_model(g, "full")),
        "insufficient_memory",
        "train",
        "method",
        {"device": T4},
    ),
    (
        "7B LoRA with a long batch on a T4",
        with_(
            training,
            lambda g: (
                _big_model(g, "qlora"),
                node(g, "train")["params"].update(batch_size=64, max_seq_length=2048),
            ),
        ),
        "insufficient_memory",
        "train",
        "batch_size",
        {"device": T4},
    ),
    (
        "device by name",
        with_(training, lambda g: _big_model(g, "full")),
        "insufficient_memory",
        "train",
        "method",
        {"device": "t4-16gb"},
    ),
    ("unknown device name", training, "unknown_device", None, None, {"device": "abacus"}),
    (
        "ternary without training",
        with_(
            training,
            lambda g: (
                g["nodes"].append({"id": "t", "kind": "quantize", "params": {"method": "ternary_b158"}}),
                g["edges"].append(edge("model", "model", "t", "model")),
            ),
        ),
        "ternary_without_training",
        "t",
        "qat_steps",
        {},
    ),
    (
        "training steps without data",
        with_(
            training,
            lambda g: (
                g["nodes"].append({"id": "t", "kind": "quantize", "params": {"qat_steps": 10}}),
                g["edges"].append(edge("model", "model", "t", "model")),
            ),
        ),
        "no_calibration_data",
        "t",
        "dataset",
        {},
    ),
    (
        "accuracy on unlabelled rows",
        with_(training, lambda g: node(g, "data")["params"].update(format="chat")),
        "metric_needs_labels",
        "eval",
        "metrics",
        {},
    ),
    (
        "description of an adapter that is not connected",
        with_(qa, lambda g: node(g, "rag")["params"].update(adapter_descriptions={"ghost": "invoices"})),
        "unknown_adapter",
        "rag",
        "adapter_descriptions",
        {},
    ),
]


@pytest.mark.parametrize(
    ("case", "build", "code", "node_id", "field", "edge_index", "kwargs"),
    ERROR_CASES,
    ids=[c[0] for c in ERROR_CASES],
)
def test_error_cases(case, build, code, node_id, field, edge_index, kwargs):
    report = validate_graph(build(), **kwargs)
    assert not report.ok
    matching = [i for i in report.errors if i.code == code]
    assert matching, f"{case}: expected {code}, got {[(i.code, i.message) for i in report.errors]}"
    issue = matching[0]
    assert (issue.node, issue.field, issue.edge) == (node_id, field, edge_index), issue
    assert issue.severity == "error" and issue.message
    assert all(i.code != "internal_error" for i in report.issues())


@pytest.mark.parametrize(
    ("case", "build", "code", "node_id", "field", "kwargs"), WARNING_CASES, ids=[c[0] for c in WARNING_CASES]
)
def test_warning_cases(case, build, code, node_id, field, kwargs):
    report = validate_graph(build(), **kwargs)
    assert report.ok, [i.message for i in report.errors]
    matching = [i for i in report.warnings if i.code == code]
    assert matching, f"{case}: expected {code}, got {[(i.code, i.message) for i in report.warnings]}"
    assert (matching[0].node, matching[0].field) == (node_id, field)
    assert matching[0].severity == "warning"


def test_every_template_is_valid_once_sources_are_chosen(template):
    raw = validate_graph(template["graph"])
    assert {i.code for i in raw.errors} == {"missing_param"}
    assert {i.field for i in raw.errors} <= {"collection", "dataset"}
    report = validate_graph(filled(template["graph"]), device="cpu-16gb")
    assert report.ok, [i.message for i in report.errors]
    assert report.graph is not None and report.order is not None
    assert [i for i in report.warnings if i.code == "insufficient_memory"] == []


def test_small_model_fits_and_qlora_fits_where_full_does_not():
    full, qlora = training(), training()
    _big_model(full, "full")
    _big_model(qlora, "qlora")
    full_report, qlora_report = validate_graph(full, device=T4), validate_graph(qlora, device=T4)
    assert full_report.estimates["train"].bytes > 5 * qlora_report.estimates["train"].bytes
    assert not [i for i in qlora_report.warnings if i.node == "train"]
    message = next(i for i in full_report.warnings if i.node == "train").message
    assert "t4-16gb" in message and "QLoRA" in message


def test_type_mismatch_message_names_both_types():
    report = validate_graph(
        with_(qa, lambda g: g["edges"].append(edge("model", "model", "index", "documents")))()
    )
    message = next(i for i in report.errors if i.code == "type_mismatch").message
    assert "Model" in message and "Documents" in message


def test_cycle_message_names_every_node_in_the_loop():
    report = validate_graph(with_(qa, _loop)())
    cycle = [i for i in report.errors if i.code == "cycle"]
    assert {i.node for i in cycle} == {"q1", "q2"}
    assert "q1" in cycle[0].message and "q2" in cycle[0].message
    assert report.order is None


def test_one_bad_node_does_not_hide_the_others():
    graph = qa()
    node(graph, "api").update(id="bad id!")
    node(graph, "index")["params"]["chunk_size"] = -1
    report = validate_graph(graph)
    codes = {(i.code, i.node) for i in report.errors}
    assert ("malformed", "bad id!") in codes and ("invalid_param", "index") in codes
    assert report.graph is None


def test_report_serializes_to_json():
    report = validate_graph(with_(training, lambda g: _big_model(g, "full"))(), device=T4)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    assert data["warnings"][0]["code"] == "insufficient_memory"
    assert data["estimates"]["train"]["bytes"] > T4.memory_bytes
    assert "train" in report.by_node() and "data" not in report.by_node()


def test_accepts_json_text_and_bytes(qa_graph):
    assert validate_graph(json.dumps(qa_graph)).ok
    assert validate_graph(json.dumps(qa_graph).encode()).ok


def test_parse_graph(qa_graph):
    graph = parse_graph(copy.deepcopy(qa_graph))
    assert graph.to_json() == qa_graph
    broken = with_(qa, lambda g: node(g, "index")["params"].update(chunk_size=0))()
    with pytest.raises(GraphInvalid) as info:
        parse_graph(broken)
    assert info.value.report.errors[0].field == "chunk_size"
    assert "Chunk size" in str(info.value)


def test_limits_are_inclusive():
    graph = {"version": 1, "nodes": [{"id": f"n{i}", "kind": "source.model"} for i in range(MAX_NODES)]}
    report = validate_graph(graph)
    assert report.ok and len(report.order) == MAX_NODES


@pytest.mark.parametrize(
    ("source", "target", "refused"),
    [
        (("source.model", "model"), ("serve.rag", "model"), False),
        (("quantize", "model"), ("evaluate", "model"), False),
        (("train.lora", "adapter"), ("serve.rag", "adapters"), False),
        (("source.model", "model"), ("serve.rag", "index"), True),
        (("source.documents", "documents"), ("train.lora", "dataset"), True),
        (("source.model", "nope"), ("serve.rag", "model"), True),
        (("source.model", "model"), ("nope.kind", "model"), True),
    ],
)
def test_check_connection(source, target, refused):
    reason = check_connection(*source, *target)
    assert (reason is not None) == refused
    if refused and source[1] == "model" and target[1] == "index":
        assert "Model" in reason and "VectorIndex" in reason
