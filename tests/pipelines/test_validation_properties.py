"""Property tests: validate_graph never raises and its report is consistent, for random graphs
built from the real kinds and ports, for random JSON, and for graphs valid by construction."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import registry
from pipelines.gallery import fill_sources
from pipelines.graph import Graph
from pipelines.validation import ValidationReport, parse_graph, validate_graph

SPECS = registry.all_specs()[:9]
KINDS = [spec.kind for spec in SPECS]
PORT_NAMES = sorted({p.name for s in SPECS for p in (*s.inputs, *s.outputs)})
PARAM_NAMES = sorted({name for s in SPECS for name in s.params.model_fields})
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
node_ids = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]) | st.text(max_size=70)


@st.composite
def random_params(draw, kind: str):
    spec = registry.find_spec(kind)
    base = spec.default_params() if spec and draw(st.booleans()) else {}
    names = st.sampled_from(PARAM_NAMES) | st.text(max_size=10)
    return {**base, **draw(st.dictionaries(names, json_values, max_size=4))}


@st.composite
def random_graphs(draw):
    """Graph-shaped data with real kinds, ports and param names, wired at random."""
    nodes = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(KINDS) | st.text(max_size=12))
        node = {"id": draw(node_ids), "kind": kind, "params": draw(random_params(kind))}
        if draw(st.booleans()):
            node["position"] = [draw(st.floats(-1e4, 1e4)), draw(st.floats(-1e4, 1e4))]
        nodes.append(node)
    ids = [n["id"] for n in nodes] or ["a"]
    ports = st.sampled_from(PORT_NAMES) | st.text(max_size=6)
    edges = draw(
        st.lists(
            st.builds(
                lambda a, ap, b, bp: {"from": [a, ap], "to": [b, bp]},
                st.sampled_from(ids),
                ports,
                st.sampled_from(ids),
                ports,
            ),
            max_size=15,
        )
    )
    return {"version": 1, "nodes": nodes, "edges": edges}


@st.composite
def valid_graphs(draw):
    """Graphs valid by construction: every required input wired to an earlier node of the right type."""
    nodes: list[dict] = []
    edges: list[dict] = []
    outputs: list[tuple[str, str, str]] = []  # (node id, port, type)
    for i in range(draw(st.integers(1, 14))):
        possible = [
            s
            for s in SPECS
            if all(any(t == str(p.type) for _, _, t in outputs) for p in s.inputs if p.required)
        ]
        spec = draw(st.sampled_from(possible))
        node_id = f"n{i}"
        nodes.append({"id": node_id, "kind": spec.kind, "params": {}, "position": [i * 100.0, 0.0]})
        for port in spec.inputs:
            candidates = [(n, p) for n, p, t in outputs if t == str(port.type)]
            wanted = port.required or (candidates and draw(st.booleans()))
            if not wanted:
                continue
            count = draw(st.integers(1, min(3, len(candidates)))) if port.multiple else 1
            for source, source_port in draw(st.permutations(candidates))[:count]:
                edges.append({"from": [source, source_port], "to": [node_id, port.name]})
        outputs += [(node_id, p.name, str(p.type)) for p in spec.outputs]
    return fill_sources({"version": 1, "nodes": nodes, "edges": edges}, collection=1, dataset=1)


def assert_consistent(report: ValidationReport, data) -> None:
    assert isinstance(report, ValidationReport)
    assert report.ok == (not report.errors)
    assert all(i.severity == "error" for i in report.errors)
    assert all(i.severity == "warning" for i in report.warnings)
    assert not [i for i in report.issues() if i.code == "internal_error"], report.issues()
    for issue in report.issues():
        assert issue.code and isinstance(issue.message, str) and issue.message
        assert issue.edge is None or (isinstance(issue.edge, int) and issue.edge >= 0)
    json.dumps(report.to_dict())
    if report.ok:
        assert report.graph is not None and report.order is not None
        position = {node_id: i for i, node_id in enumerate(report.order)}
        assert all(position[e.source_node] < position[e.target_node] for e in report.graph.edges)
        assert Graph.model_validate(report.graph.to_json()) == report.graph


@SETTINGS
@given(random_graphs())
def test_random_graphs_never_crash(data):
    report = validate_graph(data, device="t4-16gb")
    assert_consistent(report, data)
    again = validate_graph(json.loads(json.dumps(data, allow_nan=True)), device="t4-16gb")
    assert [i.to_dict() for i in again.issues()] == [i.to_dict() for i in report.issues()]


@SETTINGS
@given(json_values)
def test_random_json_never_crashes(data):
    assert_consistent(validate_graph(data), data)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["version", "nodes", "edges", "x"]), json_values, max_size=4))
def test_graph_shaped_json_never_crashes(data):
    assert_consistent(validate_graph(data), data)


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_text_never_crashes(data):
    assert_consistent(validate_graph(data), data)


@SETTINGS
@given(valid_graphs())
def test_graphs_valid_by_construction_are_valid(data):
    report = validate_graph(data)
    assert report.ok, [i.message for i in report.errors]
    assert_consistent(report, data)
    assert parse_graph(data).to_json() == data
