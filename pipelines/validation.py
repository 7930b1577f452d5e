"""Validate a pipeline graph: every problem, addressed to a node id, a field and/or an edge.

``validate_graph`` never raises, whatever it is given (random JSON included): problems are
returned in the report. The checks, in order:

1. shape: a JSON object with version 1, at most MAX_NODES nodes and MAX_EDGES edges, each node
   and edge well formed (checked one by one, so one bad node does not hide the others);
2. nodes: unique ids, known kinds, params valid against the kind's params model;
3. edges: known nodes and ports, output → input, matching artifact types, one edge per
   single-valued input, no duplicate edges;
4. required inputs connected; no cycles;
5. per-kind checks (``NodeSpec.check``) and the resource pre-flight: facts about models flow
   along the edges in topological order, each node estimates its memory
   (``pipelines.resources``), and a warning names the field to change when it will not fit
   the chosen device.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from pipelines import registry
from pipelines.graph import MAX_EDGES, MAX_NODES, Edge, Graph, Node, cycles, topological_order
from pipelines.issues import CheckContext, GraphIssue
from pipelines.param_errors import param_problems, plain_message
from pipelines.resources import (
    DEVICE_PROFILES,
    DeviceProfile,
    ModelFacts,
    UpstreamMeta,
    human_bytes,
    resolve_device,
)
from pipelines.spec import NodeSpec, Port, ResourceEstimate

__all__ = [
    "DeviceProfile", "GraphInvalid", "GraphIssue", "ValidationReport",
    "check_connection", "parse_graph", "validate_graph",
]

TOP_LEVEL_KEYS = ("version", "nodes", "edges")
_UNDECODABLE = object()


@dataclass
class ValidationReport:
    ok: bool
    errors: list[GraphIssue] = field(default_factory=list)
    warnings: list[GraphIssue] = field(default_factory=list)
    graph: Graph | None = None  # the parsed graph, when its shape is valid (even with other errors)
    estimates: dict[str, ResourceEstimate] = field(default_factory=dict)  # node id -> memory estimate
    order: list[str] | None = None  # a topological order, when the graph is acyclic

    def issues(self) -> list[GraphIssue]:
        return [*self.errors, *self.warnings]

    def by_node(self) -> dict[str, list[GraphIssue]]:
        """Issues grouped by node id (for badges on the canvas); graph-level ones are left out."""
        out: dict[str, list[GraphIssue]] = {}
        for issue in self.issues():
            if issue.node is not None:
                out.setdefault(issue.node, []).append(issue)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [issue.to_dict() for issue in self.errors],
            "warnings": [issue.to_dict() for issue in self.warnings],
            "estimates": {
                node_id: {"bytes": est.bytes, "human": human_bytes(est.bytes), "explanation": est.explanation,
                          "field": est.field, "advice": est.advice}
                for node_id, est in self.estimates.items()
            },
        }


class GraphInvalid(ValueError):
    """Raised by ``parse_graph``; ``report`` holds every problem."""

    def __init__(self, report: ValidationReport):
        self.report = report
        first = report.errors[0].message if report.errors else "invalid graph"
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        super().__init__(first + more)


def parse_graph(
    data: Any, *, device: DeviceProfile | str | None = None, allow_remote_code: bool = False
) -> Graph:
    """The graph, or GraphInvalid when it has errors (warnings do not stop it)."""
    report = validate_graph(data, device=device, allow_remote_code=allow_remote_code)
    if not report.ok or report.graph is None:
        raise GraphInvalid(report)
    return report.graph


def validate_graph(
    data: Any, *, device: DeviceProfile | str | None = None, allow_remote_code: bool = False
) -> ValidationReport:
    """Every problem of ``data`` (a dict, or JSON text/bytes). Never raises.

    ``device`` is the device the pre-flight checks against: a DeviceProfile, the name of one
    of ``pipelines.resources.DEVICE_PROFILES`` ("a100-80gb"), or None (no memory warnings;
    estimates are still computed). ``allow_remote_code``: an administrator allowed
    trust_remote_code for this workspace.
    """
    unknown_device = isinstance(device, str) and device not in DEVICE_PROFILES
    profile = None if unknown_device else resolve_device(device)
    checker = _Checker(CheckContext(device=profile, allow_remote_code=allow_remote_code))
    if unknown_device:
        checker.warn("unknown_device", f"Unknown device “{_short(device)}”: memory was not checked. Known: "
                     + ", ".join(DEVICE_PROFILES) + ".")
    try:
        checker.run(data)
    except Exception as exc:  # a bug here must not become a 500: report it, tests look for it
        checker.error("internal_error", f"the validator failed unexpectedly ({type(exc).__name__}: {exc})")
    errors = [i for i in checker.issues if i.severity == "error"]
    warnings = [i for i in checker.issues if i.severity == "warning"]
    return ValidationReport(
        ok=not errors, errors=errors, warnings=warnings,
        graph=checker.graph,
        estimates=checker.estimates, order=checker.order,
    )


def check_connection(source_kind: str, source_port: str, target_kind: str, target_port: str) -> str | None:
    """Why an edge between these ports is refused (a sentence for the user), or None when fine."""
    source, target = registry.find_spec(source_kind), registry.find_spec(target_kind)
    if source is None:
        return f"“{source_kind}” is not a known kind of step."
    if target is None:
        return f"“{target_kind}” is not a known kind of step."
    out_port, in_port = source.output(source_port), target.input(target_port)
    if out_port is None:
        return f"{source.label} has no output called “{source_port}”."
    if in_port is None:
        return f"{target.label} has no input called “{target_port}”."
    return _type_problem(source.label, out_port, target.label, in_port)


def _type_problem(source_name: str, out_port: Port, target_name: str, in_port: Port) -> str | None:
    if out_port.type == in_port.type:
        return None
    return (
        f"{source_name} gives {_article(out_port.type)} (its {_port_label(out_port)} output), but the "
        f"{_port_label(in_port)} input of {target_name} needs {_article(in_port.type)}: {_type_hint(in_port)}"
    )


def _article(type_name: str) -> str:
    if type_name.endswith("s"):  # "Documents"
        return type_name
    return f"{'an' if type_name[0] in 'AEIOU' else 'a'} {type_name}"


# What produces each artifact type, for "connect X here" hints.
_PRODUCERS = {
    "Documents": "a Documents source", "Dataset": "a Dataset source",
    "Model": "a Base model or a Quantize step", "Adapter": "a Fine-tune step",
    "VectorIndex": "a Search index step", "Service": "a Q&A service step",
    "Endpoint": "a Publish API step", "Report": "a Fine-tune, Quantize or Evaluate step",
}


def _type_hint(port: Port) -> str:
    return f"connect {_PRODUCERS.get(str(port.type), 'an output of that type')} here."


def _port_label(port: Port) -> str:
    return port.label or port.name.title()


class _Checker:
    """One validation pass; collects issues instead of raising."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx
        self.issues: list[GraphIssue] = []
        self.graph: Graph | None = None
        self.shape_ok = True
        self.estimates: dict[str, ResourceEstimate] = {}
        self.order: list[str] | None = None
        self.nodes: dict[str, Node] = {}  # well-formed nodes with unique ids
        self.specs: dict[str, NodeSpec] = {}  # node id -> spec, for known kinds
        self.params: dict[str, BaseModel] = {}  # node id -> parsed params, when valid
        self.edges: list[tuple[int, Edge]] = []  # well-formed edges that passed the edge checks
        self.attempted: set[tuple[str, str]] = set()  # input ports some edge (even a bad one) targets

    def error(self, code: str, message: str, **where: Any) -> None:
        self.issues.append(GraphIssue(code, message, **where))

    def warn(self, code: str, message: str, **where: Any) -> None:
        self.issues.append(GraphIssue(code, message, severity="warning", **where))

    # -- 1. shape --------------------------------------------------------------------------
    def run(self, data: Any) -> None:
        data = self._decode(data)
        if data is _UNDECODABLE or not self._check_top_level(data):
            self.shape_ok = False
            return
        nodes = self._parse_nodes(data.get("nodes", []))
        edges = self._parse_edges(data.get("edges", []))
        if self.shape_ok:
            self.graph = Graph(version=1, nodes=nodes, edges=[edge for _, edge in edges])
        self._check_nodes(nodes)
        self._check_edges(edges)
        self._check_required_inputs()
        if self._check_cycles():
            self._flow_facts()

    def _decode(self, data: Any) -> Any:
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                self.error("invalid_json", "The graph is not UTF-8 text.")
                return _UNDECODABLE
        if isinstance(data, str):
            try:
                return json.loads(data)
            except (ValueError, RecursionError) as exc:
                self.error("invalid_json", f"The graph is not valid JSON: {exc}.")
                return _UNDECODABLE
        return data

    def _check_top_level(self, data: Any) -> bool:
        if not isinstance(data, dict):
            self.error("malformed", "A graph must be a JSON object with “version”, “nodes” and “edges”.")
            return False
        ok = True
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.error("malformed", f"Unknown top-level field “{_short(key)}”; a graph has only "
                           "version, nodes and edges.", field=_short(key))
                ok = False
        if data.get("version", 1) != 1 or isinstance(data.get("version"), bool):
            self.error("malformed", "Unsupported graph version: use “version”: 1.", field="version")
            ok = False
        limits = (("nodes", MAX_NODES, "too_many_nodes"), ("edges", MAX_EDGES, "too_many_edges"))
        for key, limit, code in limits:
            value = data.get(key, [])
            if not isinstance(value, list):
                self.error("malformed", f"“{key}” must be a list.", field=key)
                ok = False
            elif len(value) > limit:
                self.error(code, f"A graph may have at most {limit} {key}; this one has {len(value)}.",
                           field=key)
                ok = False
        return ok

    def _parse_nodes(self, raw_nodes: list[Any]) -> list[Node]:
        nodes: list[Node] = []
        for i, raw in enumerate(raw_nodes):
            try:
                nodes.append(Node.model_validate(raw))
            except ValidationError as exc:
                self.shape_ok = False
                node_id = _raw_id(raw)
                for err in exc.errors(include_url=False):
                    path = _loc(err["loc"])
                    self.error("malformed", f"{_node_ref(node_id, i)}: {plain_message(err)}{_at(path)}",
                               node=node_id, field=path or f"nodes.{i}")
        return nodes

    def _parse_edges(self, raw_edges: list[Any]) -> list[tuple[int, Edge]]:
        edges: list[tuple[int, Edge]] = []
        for j, raw in enumerate(raw_edges):
            try:
                edges.append((j, Edge.model_validate(raw)))
            except ValidationError as exc:
                self.shape_ok = False
                for err in exc.errors(include_url=False):
                    path = _loc(err["loc"])
                    self.error("malformed", f"Connection {j + 1}: {plain_message(err)}{_at(path)}",
                               edge=j, field=path)
        return edges

    # -- 2. nodes --------------------------------------------------------------------------
    def _check_nodes(self, nodes: list[Node]) -> None:
        for node in nodes:
            if node.id in self.nodes:
                self.error("duplicate_node_id", f"Two steps have the id “{node.id}”; ids must be unique.",
                           node=node.id, field="id")
                continue
            self.nodes[node.id] = node
            spec = registry.find_spec(node.kind)
            if spec is None:
                self._unknown_kind(node)
                continue
            self.specs[node.id] = spec
            self._check_params(node, spec)

    def _unknown_kind(self, node: Node) -> None:
        close = difflib.get_close_matches(node.kind, registry.kinds(), n=1)
        hint = f" Did you mean “{close[0]}”?" if close else ""
        self.error("unknown_kind", f"“{_short(node.kind)}” is not a known kind of step.{hint}",
                   node=node.id, field="kind")

    def _check_params(self, node: Node, spec: NodeSpec) -> None:
        try:
            self.params[node.id] = spec.params.model_validate(node.params)
        except ValidationError as exc:
            for name, (code, message) in param_problems(exc, spec).items():
                self.error(code, message, node=node.id, field=name)

    # -- 3. edges --------------------------------------------------------------------------
    def _check_edges(self, edges: list[tuple[int, Edge]]) -> None:
        seen: dict[tuple, int] = {}
        into: dict[tuple[str, str], str] = {}  # input port -> the node already connected to it
        for j, edge in edges:
            self.attempted.add(edge.target)
            ports = self._edge_ports(j, edge)
            if ports is None:
                continue
            key = (edge.source, edge.target)
            if key in seen:
                self.error("duplicate_edge", f"Connection {j + 1} repeats connection {seen[key] + 1}.",
                           node=edge.target_node, field=edge.target_port, edge=j)
                continue
            seen[key] = j
            (_, out_port), (_, in_port) = ports
            source_name, target_name = self._name(edge.source_node), self._name(edge.target_node)
            problem = _type_problem(source_name, out_port, target_name, in_port)
            if problem:
                self.error("type_mismatch", problem, node=edge.target_node, field=edge.target_port, edge=j)
                continue
            if edge.target in into and not in_port.multiple:
                self.error(
                    "multiple_inputs",
                    f"{_port_label(in_port)} of {self._name(edge.target_node)} takes one connection; it "
                    f"already has one from {self._name(into[edge.target])}.",
                    node=edge.target_node, field=edge.target_port, edge=j,
                )
                continue
            into.setdefault(edge.target, edge.source_node)
            self.edges.append((j, edge))

    def _edge_ports(self, j: int, edge: Edge) -> tuple[tuple[NodeSpec, Port], tuple[NodeSpec, Port]] | None:
        ends = []
        for (node_id, port_name), direction in ((edge.source, "out"), (edge.target, "in")):
            if node_id not in self.nodes:
                self.error("unknown_node",
                           f"Connection {j + 1} refers to a step “{node_id}” that does not exist.",
                           edge=j, field="from" if direction == "out" else "to")
                return None
            spec = self.specs.get(node_id)
            if spec is None:
                return None  # already reported as unknown_kind
            port = spec.output(port_name) if direction == "out" else spec.input(port_name)
            if port is None:
                self._unknown_port(j, node_id, spec, port_name, direction)
                return None
            ends.append((spec, port))
        if edge.source_node == edge.target_node:
            self.error("cycle", f"Connection {j + 1} connects {self._name(edge.source_node)} to itself.",
                       node=edge.source_node, edge=j)
            return None
        return ends[0], ends[1]

    def _unknown_port(self, j: int, node_id: str, spec: NodeSpec, port_name: str, direction: str) -> None:
        ports, other = (spec.outputs, spec.inputs) if direction == "out" else (spec.inputs, spec.outputs)
        names = ", ".join(p.name for p in ports) or "none"
        if any(p.name == port_name for p in other):
            kind = "input" if direction == "out" else "output"
            why = (f"“{port_name}” is an {kind} of {self._name(node_id)}; "
                   "connections go from an output to an input.")
        elif not ports:
            why = (f"{self._name(node_id)} has no {'outputs' if direction == 'out' else 'inputs'}: "
                   f"it is {'the end' if direction == 'out' else 'the start'} of a pipeline.")
        else:
            why = (f"{self._name(node_id)} has no {'output' if direction == 'out' else 'input'} called "
                   f"“{port_name}” (it has: {names}).")
        self.error("unknown_port", why, node=node_id, field=port_name, edge=j)

    # -- 4. required inputs, cycles ------------------------------------------------------
    def _check_required_inputs(self) -> None:
        # A port whose only edge was refused already has an error saying why: no second one.
        for node_id, spec in self.specs.items():
            for port in spec.inputs:
                if port.required and (node_id, port.name) not in self.attempted:
                    self.error(
                        "missing_input",
                        f"{self._name(node_id)} needs its {_port_label(port)} input: {_type_hint(port)}",
                        node=node_id, field=port.name,
                    )

    def _check_cycles(self) -> bool:
        graph = Graph.model_construct(
            version=1, nodes=list(self.nodes.values()), edges=[edge for _, edge in self.edges]
        )
        try:
            self.order = topological_order(graph)
        except ValueError:
            for cycle in cycles(graph):
                names = " → ".join(f"{self._name(n)}" for n in [*cycle, cycle[0]])
                for node_id in cycle:
                    self.error("cycle", f"These steps form a loop: {names}. A pipeline must flow one way: "
                               "remove one of these connections.", node=node_id)
            return False
        return True

    # -- 5. per-kind checks and the resource pre-flight ----------------------------------
    def _flow_facts(self) -> None:
        facts: dict[str, dict[str, ModelFacts | None]] = {}
        inputs: dict[str, dict[str, list[UpstreamMeta]]] = {node_id: {} for node_id in self.nodes}
        for _, edge in self.edges:
            upstream = self.nodes[edge.source_node]
            inputs[edge.target_node].setdefault(edge.target_port, []).append(UpstreamMeta(
                node=upstream.id, kind=upstream.kind, port=edge.source_port, params=upstream.params,
                model=None,  # filled in below, once the upstream node's facts are known
            ))
        for node_id in self.order or []:
            spec, params = self.specs.get(node_id), self.params.get(node_id)
            if spec is None or params is None:
                facts[node_id] = {}
                continue
            meta = {
                port: [_with_model(m, facts.get(m.node, {}).get(m.port)) for m in metas]
                for port, metas in inputs[node_id].items()
            }
            facts[node_id] = self._node_facts(node_id, spec, params, meta)

    def _node_facts(
        self, node_id: str, spec: NodeSpec, params: BaseModel, meta: dict[str, list[UpstreamMeta]]
    ) -> dict[str, ModelFacts | None]:
        out: dict[str, ModelFacts | None] = {}
        try:
            if spec.facts:
                out = dict(spec.facts(params, meta))
            if spec.check:
                for issue in spec.check(params, meta, self.ctx):
                    issue.node = node_id
                    self.issues.append(issue)
            if spec.estimate:
                estimate = spec.estimate(params, meta, self.ctx.device)
                if estimate is not None:
                    self.estimates[node_id] = estimate
                    self._compare_with_device(node_id, estimate)
        except Exception as exc:  # an extra kind's hook must not break validation
            self.warn("estimate_failed", f"Could not estimate this step's needs ({type(exc).__name__}).",
                      node=node_id)
        return out

    def _compare_with_device(self, node_id: str, estimate: ResourceEstimate) -> None:
        device = self.ctx.device
        if device is None or estimate.bytes <= device.memory_bytes:
            return
        advice = f" To fit: {estimate.advice}." if estimate.advice else ""
        self.warn(
            "insufficient_memory",
            f"{self._name(node_id)} needs about {human_bytes(estimate.bytes)} but {device.name} has "
            f"{human_bytes(device.memory_bytes)} ({estimate.explanation}).{advice}",
            node=node_id, field=estimate.field,
        )

    def _name(self, node_id: str) -> str:
        """How messages name a node: its label, else its kind's label and its id."""
        node = self.nodes.get(node_id)
        if node is not None and node.label:
            return f"“{node.label}”"
        spec = self.specs.get(node_id)
        return f"{spec.label} “{node_id}”" if spec else f"“{node_id}”"


def _with_model(meta: UpstreamMeta, model: ModelFacts | None) -> UpstreamMeta:
    return UpstreamMeta(node=meta.node, kind=meta.kind, port=meta.port, params=meta.params, model=model)


def _loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _at(path: str) -> str:
    return f" (at “{path}”)" if path else ""


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raw_id(raw: Any) -> str | None:
    node_id = raw.get("id") if isinstance(raw, dict) else None
    return node_id if isinstance(node_id, str) and 0 < len(node_id) <= 64 else None


def _node_ref(node_id: str | None, index: int) -> str:
    return f"Step “{node_id}”" if node_id else f"Step {index + 1}"
