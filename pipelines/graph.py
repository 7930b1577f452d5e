"""The pipeline graph: plain JSON, parsed by pydantic.

    {"version": 1,
     "nodes": [{"id": "docs", "kind": "source.documents", "params": {...}, "position": [x, y]}],
     "edges": [{"from": ["docs", "documents"], "to": ["index", "documents"]}]}

This module checks only the *shape* of a graph (types, id syntax, size limits). Whether the
kinds exist, params are valid, ports match and the graph is acyclic is `pipelines.validation`.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_serializer

# Limits a user-built graph never reaches (the largest gallery template has ~10 nodes) but that
# bound the work a request can cause: validation is linear in nodes + edges.
MAX_NODES = 1000
MAX_EDGES = 4000
MAX_LABEL_LENGTH = 200

NODE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

NodeId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NODE_ID_PATTERN)]
PortName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]{1,64}$")]
Kind = Annotated[str, StringConstraints(min_length=1, max_length=100)]
# A position on the canvas; bounded so a hostile graph cannot smuggle infinities into the UI.
Coordinate = Annotated[float, Field(ge=-1e7, le=1e7, allow_inf_nan=False)]


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: NodeId
    kind: Kind
    params: dict[str, Any] = Field(default_factory=dict)
    position: tuple[Coordinate, Coordinate] = (0.0, 0.0)
    label: Annotated[str, StringConstraints(max_length=MAX_LABEL_LENGTH)] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        # JSON-shaped output (position as a list, no "label": null) so dumps round-trip the input.
        data = handler(self)
        data["position"] = list(data["position"])
        if data.get("label") is None:
            data.pop("label", None)
        return data


class Edge(BaseModel):
    """An edge from an output port to an input port; JSON keys are "from" and "to"."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    source: tuple[NodeId, PortName] = Field(alias="from")
    target: tuple[NodeId, PortName] = Field(alias="to")

    @property
    def source_node(self) -> str:
        return self.source[0]

    @property
    def source_port(self) -> str:
        return self.source[1]

    @property
    def target_node(self) -> str:
        return self.target[0]

    @property
    def target_port(self) -> str:
        return self.target[1]

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return {key: list(value) for key, value in handler(self).items()}


class Graph(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    nodes: list[Node] = Field(default_factory=list, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list, max_length=MAX_EDGES)

    def node(self, node_id: str) -> Node:
        """The node with this id; KeyError when there is none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def node_ids(self) -> list[str]:
        return [node.id for node in self.nodes]

    def edges_into(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.target[0] == node_id]

    def edges_from(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.source[0] == node_id]

    def to_json(self) -> dict[str, Any]:
        """The graph as JSON-safe data (the format stored in a pipeline version)."""
        return self.model_dump(mode="json", by_alias=True)


class CycleError(ValueError):
    """The graph has a cycle; ``nodes`` lists the nodes on (or feeding only into) cycles."""

    def __init__(self, nodes: list[str]):
        self.nodes = nodes
        super().__init__("the graph has a cycle through: " + ", ".join(nodes))


def _adjacency(graph: Graph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Successors and predecessors of each node; edges that name unknown nodes are ignored."""
    succ: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    pred: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        a, b = edge.source[0], edge.target[0]
        if a in succ and b in succ:
            succ[a].append(b)
            pred[b].append(a)
    return succ, pred


def topological_order(graph: Graph) -> list[str]:
    """Node ids so that every edge goes forward; ties keep the graph's node order.

    Raises CycleError naming the nodes that could not be ordered.
    """
    succ, pred = _adjacency(graph)
    indegree = {node_id: len(p) for node_id, p in pred.items()}
    ready = deque(node_id for node_id in succ if indegree[node_id] == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for nxt in succ[node_id]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if len(order) < len(succ):
        raise CycleError(find_cycle(graph) or [n for n in succ if indegree[n] > 0])
    return order


def find_cycle(graph: Graph) -> list[str]:
    """One cycle as a list of node ids (first node not repeated), or [] when acyclic."""
    succ, _ = _adjacency(graph)
    color: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in succ:
        if start in color:
            continue
        # Iterative DFS: a 1000-node chain must not hit Python's recursion limit.
        path: list[str] = [start]
        iters = [iter(succ[start])]
        color[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                iters.pop()
            elif color.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in color:
                color[nxt] = 1
                path.append(nxt)
                iters.append(iter(succ[nxt]))
    return []


def _reachable(start: str, adjacency: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(adjacency.get(start, ()))
    while todo:
        node_id = todo.pop()
        if node_id not in seen:
            seen.add(node_id)
            todo.extend(adjacency[node_id])
    seen.discard(start)
    return seen


def upstream(graph: Graph, node_id: str) -> set[str]:
    """Every node this node depends on, directly or not (the node itself excluded)."""
    return _reachable(node_id, _adjacency(graph)[1])


def downstream(graph: Graph, node_id: str) -> set[str]:
    """Every node that depends on this node, directly or not (the node itself excluded)."""
    return _reachable(node_id, _adjacency(graph)[0])


def cycles(graph: Graph) -> list[list[str]]:
    """Each loop as a list of node ids in path order: one per strongly connected component."""
    succ, _ = _adjacency(graph)
    return [_cycle_path(component, succ) for component in _strong_components(succ) if len(component) > 1]


def _strong_components(succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a 1000-node chain must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in succ:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_path(component: list[str], succ: dict[str, list[str]]) -> list[str]:
    """A loop through the component's first node, found by breadth-first search."""
    members, start = set(component), component[-1]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in succ[node]:
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if child in members and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return component
