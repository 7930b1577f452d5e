"""The graph model: JSON round trip, shape errors, helpers, ordering."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipelines.graph import (
    MAX_NODES,
    CycleError,
    Edge,
    Graph,
    cycles,
    downstream,
    find_cycle,
    topological_order,
    upstream,
)

DESIGN_JSON = {
    "version": 1,
    "nodes": [
        {"id": "docs", "kind": "source.documents", "params": {"collection": 3}, "position": [10.5, 20]},
        {"id": "index", "kind": "vectorize.faiss", "params": {}, "position": [300, 20], "label": "Index"},
    ],
    "edges": [{"from": ["docs", "documents"], "to": ["index", "documents"]}],
}


def chain(n: int, *, close: bool = False) -> Graph:
    nodes = [{"id": f"n{i}", "kind": "k"} for i in range(n)]
    edges = [{"from": [f"n{i}", "o"], "to": [f"n{i + 1}", "i"]} for i in range(n - 1)]
    if close:
        edges.append({"from": [f"n{n - 1}", "o"], "to": ["n0", "i"]})
    return Graph.model_validate({"version": 1, "nodes": nodes, "edges": edges})


def test_round_trip_is_exact():
    graph = Graph.model_validate(DESIGN_JSON)
    assert graph.model_dump(by_alias=True) == DESIGN_JSON
    assert json.loads(graph.model_dump_json(by_alias=True)) == DESIGN_JSON
    assert graph.to_json() == DESIGN_JSON
    assert Graph.model_validate_json(json.dumps(graph.to_json())) == graph


def test_edge_accepts_python_names_and_json_names():
    by_name = Edge(source=("a", "out"), target=("b", "in"))
    by_alias = Edge.model_validate({"from": ["a", "out"], "to": ["b", "in"]})
    assert by_name == by_alias
    assert (by_alias.source_node, by_alias.source_port, by_alias.target_node, by_alias.target_port) == (
        "a",
        "out",
        "b",
        "in",
    )
    assert by_name.model_dump() == {"from": ["a", "out"], "to": ["b", "in"]}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda g: g.update(extra=1),
        lambda g: g.update(version=2),
        lambda g: g["nodes"][0].update(id="has space"),
        lambda g: g["nodes"][0].update(id="x" * 65),
        lambda g: g["nodes"][0].update(id=""),
        lambda g: g["nodes"][0].update(colour="red"),
        lambda g: g["nodes"][0].update(position=[1]),
        lambda g: g["nodes"][0].update(position=[float("inf"), 0]),
        lambda g: g["nodes"][0].update(params=[1, 2]),
        lambda g: g["edges"][0].update({"from": ["docs"]}),
        lambda g: g["edges"][0].update(via="x"),
    ],
)
def test_shape_errors_are_rejected(mutate):
    data = json.loads(json.dumps(DESIGN_JSON))
    mutate(data)
    with pytest.raises(ValidationError):
        Graph.model_validate(data)


def test_size_limit_is_part_of_the_model():
    data = {"version": 1, "nodes": [{"id": f"n{i}", "kind": "k"} for i in range(MAX_NODES + 1)]}
    with pytest.raises(ValidationError):
        Graph.model_validate(data)


def test_helpers():
    graph = Graph.model_validate(DESIGN_JSON)
    assert graph.node("index").label == "Index"
    with pytest.raises(KeyError):
        graph.node("nope")
    assert [e.source_node for e in graph.edges_into("index")] == ["docs"]
    assert graph.edges_into("docs") == []
    assert [e.target_node for e in graph.edges_from("docs")] == ["index"]


def test_topological_order_and_reachability():
    graph = Graph.model_validate(
        {
            "version": 1,
            "nodes": [{"id": x, "kind": "k"} for x in ("d", "c", "b", "a")],
            "edges": [
                {"from": [a, "o"], "to": [b, "i"]}
                for a, b in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))
            ],
        }
    )
    order = topological_order(graph)
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("a") < order.index("c") < order.index("d")
    assert upstream(graph, "d") == {"a", "b", "c"}
    assert downstream(graph, "a") == {"b", "c", "d"}
    assert upstream(graph, "a") == set() and downstream(graph, "d") == set()


def test_cycle_is_named():
    graph = chain(5, close=True)
    with pytest.raises(CycleError) as info:
        topological_order(graph)
    assert sorted(info.value.nodes) == [f"n{i}" for i in range(5)]
    assert sorted(find_cycle(graph)) == [f"n{i}" for i in range(5)]


def test_long_chain_needs_no_recursion():
    graph = chain(MAX_NODES)
    assert topological_order(graph)[-1] == f"n{MAX_NODES - 1}"
    assert find_cycle(graph) == []
    assert len(upstream(graph, f"n{MAX_NODES - 1}")) == MAX_NODES - 1
    assert len(find_cycle(chain(MAX_NODES, close=True))) == MAX_NODES


def test_every_loop_is_found_in_path_order():
    graph = Graph.model_validate(
        {
            "version": 1,
            "nodes": [{"id": x, "kind": "k"} for x in ("a", "b", "c", "d", "e", "f")],
            "edges": [
                {"from": [a, "o"], "to": [b, "i"]}
                for a, b in (
                    ("a", "b"),
                    ("b", "c"),
                    ("c", "a"),
                    ("c", "d"),
                    ("d", "e"),
                    ("e", "d"),
                    ("e", "f"),
                )
            ],
        }
    )
    loops = sorted(cycles(graph))
    assert [sorted(loop) for loop in loops] == [["a", "b", "c"], ["d", "e"]]
    for loop in loops:  # each consecutive pair (and last -> first) is an edge
        pairs = set(zip(loop, loop[1:] + loop[:1], strict=True))
        assert pairs <= {(e.source_node, e.target_node) for e in graph.edges}
    assert cycles(chain(10)) == []
