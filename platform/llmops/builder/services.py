"""Writes for pipelines: create, save a version, restore, duplicate, import, delete.

Saving policy: a graph must be *well-formed* to be stored (valid JSON shape, no unknown
fields, within the size limits), otherwise the save is refused and nothing is written. A
well-formed graph with *semantic* problems (an unconnected input, a bad parameter, a wrong
wire) is saved anyway, because people save work in progress; the version keeps a summary of
its validation so lists can show "2 problems" and a run refuses it later.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from llmops.accounts.models import Role, Workspace
from llmops.accounts.selectors import user_can
from llmops.builder.models import Pipeline, PipelineVersion
from pipelines.graph import MAX_EDGES, MAX_NODES, Graph

EXPORT_FORMAT = "llmops.pipeline"
EXPORT_FORMAT_VERSION = 1
MAX_NAME = 120
MAX_DESCRIPTION = 2000
MAX_MESSAGE = 200
# Params are user JSON: bound their nesting so storing and rendering them stays cheap and
# cannot hit Python's recursion limit (real params are at most two levels deep).
MAX_PARAM_DEPTH = 20
EMPTY_GRAPH: dict[str, Any] = {"version": 1, "nodes": [], "edges": []}


class PipelineError(Exception):
    """A refused write; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class GraphMalformed(PipelineError):
    status = 422


class GraphTooLarge(PipelineError):
    status = 413


# --- JSON in ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use a number or null)")


def json_parse(raw: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, no NUL characters and no lone surrogates (\\ud800), which
    databases refuse at save time; PipelineError naming the problem otherwise."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise PipelineError("Malformed JSON: nested too deeply.") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PipelineError(f"Malformed JSON: {exc}") from exc
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    if "\\u0000" in text or "\x00" in text:
        raise PipelineError("Malformed JSON: text must not contain NUL (\\u0000) characters.")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError as exc:
        raise PipelineError("Malformed JSON: nested too deeply.") from exc
    except UnicodeEncodeError as exc:
        raise PipelineError("Malformed JSON: text contains an unpaired surrogate (invalid Unicode).") from exc
    return data


# --- graph checks -------------------------------------------------------------------------


def _pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)[:50]
    ]


def _value_problem(value: Any, limit: int) -> str | None:
    """Why JSON-like data cannot be stored (too deep, NaN/Infinity, NUL, lone surrogate), or None."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return f"nested more than {limit} levels deep"
        if isinstance(item, float) and not math.isfinite(item):
            return "contain NaN or Infinity, which is not valid JSON"
        if isinstance(item, str) and ("\x00" in item or _has_surrogate(item)):
            return "contain a NUL character or invalid Unicode"
        if isinstance(item, dict):
            todo.extend((key, depth + 1) for key in item)
            todo.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            todo.extend((child, depth + 1) for child in item)
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def graph_parse(data: Any) -> Graph:
    """The graph as a pydantic model, or GraphTooLarge / GraphMalformed naming the problem."""
    if not isinstance(data, dict):
        raise GraphMalformed(f"The graph must be a JSON object, not {_json_type(data)}.")
    for key, limit in (("nodes", MAX_NODES), ("edges", MAX_EDGES)):
        items = data.get(key)
        if isinstance(items, list) and len(items) > limit:
            raise GraphTooLarge(f"The graph has {len(items)} {key}; the limit is {limit}.")
    try:
        graph = Graph.model_validate(data)
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
        first = errors[0]
        where = ".".join(first["loc"]) or "graph"
        raise GraphMalformed(f"The graph is malformed: {where}: {first['message']}", errors) from exc
    _check_unique_ids(graph)
    for node in graph.nodes:
        problem = _value_problem(node.params, MAX_PARAM_DEPTH)
        if problem:
            raise GraphMalformed(f"Node {node.id!r}: params {problem}.")
        if node.label is not None and _value_problem(node.label, 1):
            raise GraphMalformed(f"Node {node.id!r}: the label contains a NUL character or invalid Unicode.")
    return graph


def _check_unique_ids(graph: Graph) -> None:
    seen: set[str] = set()
    for node in graph.nodes:
        if node.id in seen:
            raise GraphMalformed(f"Two nodes have the id {node.id!r}; node ids must be unique.")
        seen.add(node.id)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def validation_summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": bool(report.get("ok")),
        "errors": len(report.get("errors") or []),
        "warnings": len(report.get("warnings") or []),
    }


def graph_validate(*, graph: Any, device: str | None = None) -> dict[str, Any]:
    """The full validation report of any JSON (malformed graphs give a report, not an error)."""
    from pipelines.validation import validate_graph

    return validate_graph(graph, device=device).to_dict()


# --- permissions ------------------------------------------------------------------------------


def require_editor(*, user, workspace: Workspace) -> None:
    if not user_can(user=user, workspace=workspace, role=Role.EDITOR):
        raise PermissionDenied("Viewers cannot change pipelines; ask a workspace owner for editor access.")


def _clean_text(value: str | None, *, field: str, limit: int, required: bool = False) -> str:
    text = (value or "").strip()
    if _value_problem(text, 1):
        raise PipelineError(f"The {field} contains a NUL character or invalid Unicode.")
    if required and not text:
        raise PipelineError(f"The {field} cannot be empty.")
    if len(text) > limit:
        raise PipelineError(f"The {field} is {len(text)} characters long; the limit is {limit}.")
    return text


# --- writes -------------------------------------------------------------------------------------


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A one-line summary of what a save changed, for the history when no message is given."""
    if old is None:
        return ""
    before = {n["id"]: n for n in old.get("nodes", [])}
    after = {n["id"]: n for n in new.get("nodes", [])}
    wires = lambda g: {(tuple(e["from"]), tuple(e["to"])) for e in g.get("edges", [])}  # noqa: E731
    parts = []
    for verb, ids in (("added", after.keys() - before.keys()), ("removed", before.keys() - after.keys())):
        if ids:
            parts.append(f"{verb} {', '.join(sorted(ids)[:5])}" + ("…" if len(ids) > 5 else ""))
    kept = after.keys() & before.keys()
    changed = sorted(i for i in kept if after[i].get("params") != before[i].get("params"))
    if changed:
        parts.append(f"changed settings of {', '.join(changed[:5])}" + ("…" if len(changed) > 5 else ""))
    gained, lost = len(wires(new) - wires(old)), len(wires(old) - wires(new))
    if gained or lost:
        counts = ((gained, "added"), (lost, "removed"))
        parts.append(", ".join(f"{n} wire{'s' if n > 1 else ''} {w}" for n, w in counts if n))
    moved = any(after[i].get("position") != before[i].get("position") for i in kept)
    text = "; ".join(parts) or ("moved steps" if moved else "no changes")
    return (text[0].upper() + text[1:])[:MAX_MESSAGE]


def _append_version(*, pipeline: Pipeline, user, graph: Graph, message: str) -> PipelineVersion:
    """The next numbered version. The caller holds a transaction; the pipeline row is locked
    so two saves at once get 4 and 5 instead of colliding on 4."""
    list(Pipeline.objects.select_for_update().filter(pk=pipeline.pk).values_list("pk", flat=True))
    previous = pipeline.versions.order_by("-number").first()
    last = previous.number if previous else 0
    data = graph.to_json()
    message = message or describe_change(previous.graph if previous else None, data)
    version = PipelineVersion.objects.create(
        workspace_id=pipeline.workspace_id, pipeline=pipeline, number=last + 1, graph=data,
        message=message, created_by=user if getattr(user, "is_authenticated", False) else None,
        validation=validation_summary(graph_validate(graph=data)),
    )
    Pipeline.objects.filter(pk=pipeline.pk).update(updated_at=timezone.now())
    return version


@transaction.atomic
def pipeline_create(
    *, workspace: Workspace, user, name: str, description: str = "", graph: Any = None,
    message: str = "Created",
) -> Pipeline:
    """A new pipeline with version 1 (an empty canvas unless a graph is given)."""
    require_editor(user=user, workspace=workspace)
    parsed = graph_parse(EMPTY_GRAPH if graph is None else graph)
    pipeline = Pipeline.objects.create(
        workspace=workspace, created_by=user,
        name=_clean_text(name, field="name", limit=MAX_NAME, required=True),
        description=_clean_text(description, field="description", limit=MAX_DESCRIPTION),
    )
    _append_version(
        pipeline=pipeline, user=user, graph=parsed,
        message=_clean_text(message, field="message", limit=MAX_MESSAGE),
    )
    return pipeline


@transaction.atomic
def pipeline_save_version(*, pipeline: Pipeline, user, graph: Any, message: str = "") -> PipelineVersion:
    require_editor(user=user, workspace=pipeline.workspace)
    parsed = graph_parse(graph)
    return _append_version(
        pipeline=pipeline, user=user, graph=parsed,
        message=_clean_text(message, field="message", limit=MAX_MESSAGE),
    )


@transaction.atomic
def pipeline_update(
    *, pipeline: Pipeline, user, name: str | None = None, description: str | None = None,
    graph: Any = None, message: str = "",
) -> PipelineVersion:
    """Rename / describe and, when a graph is given, save it as a new version.

    Everything is checked before anything is written, so a bad graph never leaves a renamed
    pipeline behind. Returns the new version, or the latest one when no graph was given.
    """
    require_editor(user=user, workspace=pipeline.workspace)
    parsed = graph_parse(graph) if graph is not None else None
    message = _clean_text(message, field="message", limit=MAX_MESSAGE)
    fields = []
    if name is not None:
        pipeline.name = _clean_text(name, field="name", limit=MAX_NAME, required=True)
        fields.append("name")
    if description is not None:
        pipeline.description = _clean_text(description, field="description", limit=MAX_DESCRIPTION)
        fields.append("description")
    if fields:
        pipeline.save(update_fields=[*fields, "updated_at"])
    if parsed is None:
        return pipeline.latest_version
    return _append_version(pipeline=pipeline, user=user, graph=parsed, message=message)


@transaction.atomic
def pipeline_restore_version(*, pipeline: Pipeline, user, number: int) -> PipelineVersion:
    """A new version with the graph of version ``number`` (history is never rewritten)."""
    require_editor(user=user, workspace=pipeline.workspace)
    old = pipeline.versions.filter(number=number).first()
    if old is None:
        raise PipelineError(f"Version {number} does not exist.")
    return _append_version(
        pipeline=pipeline, user=user, graph=graph_parse(old.graph), message=f"Restored version {number}"
    )


@transaction.atomic
def pipeline_duplicate(*, pipeline: Pipeline, user, name: str | None = None) -> Pipeline:
    """A copy of the latest graph as a new pipeline in the same workspace, starting at v1."""
    latest = pipeline.latest_version
    return pipeline_create(
        workspace=pipeline.workspace, user=user,
        name=name or f"Copy of {pipeline.name}"[:MAX_NAME], description=pipeline.description,
        graph=latest.graph if latest else None, message=f"Duplicated from {pipeline.name}",
    )


@transaction.atomic
def pipeline_delete(*, pipeline: Pipeline, user) -> None:
    """Soft delete: the pipeline disappears, its versions stay for runs that used them."""
    require_editor(user=user, workspace=pipeline.workspace)
    pipeline.deleted_at = timezone.now()
    pipeline.save(update_fields=["deleted_at", "updated_at"])


def pipeline_export(*, pipeline: Pipeline, version: PipelineVersion | None = None) -> dict[str, Any]:
    """A self-describing JSON document that ``pipeline_import`` reads back."""
    version = version or pipeline.latest_version
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION,
        "name": pipeline.name, "description": pipeline.description,
        "version": version.number if version else None,
        "exported_at": timezone.now().isoformat(),
        "graph": version.graph if version else EMPTY_GRAPH,
    }


def _import_document(data: Any) -> tuple[dict[str, Any], str, str]:
    """(graph, name, description) from an export document or a bare graph."""
    if isinstance(data, (bytes, str)):
        try:
            data = json_parse(data)
        except PipelineError as exc:
            raise PipelineError(exc.message.replace("Malformed JSON", "The file is not valid JSON")) from exc
    if not isinstance(data, dict):
        raise GraphMalformed(f"The file must hold a JSON object, not {_json_type(data)}.")
    if "graph" not in data:
        return data, "", ""  # a bare graph, as GET /api/v1/pipelines/{id} shows it
    if data.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
        raise PipelineError(f"Unknown format {str(data.get('format'))[:50]!r}; expected {EXPORT_FORMAT!r}.")
    allowed = {"format", "format_version", "name", "description", "version", "exported_at", "graph"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise GraphMalformed(f"Unknown field(s) in the file: {', '.join(unknown)[:200]}.")
    name, description = data.get("name") or "", data.get("description") or ""
    if not isinstance(name, str) or not isinstance(description, str):
        raise GraphMalformed("name and description must be strings.")
    return data["graph"], name, description


@transaction.atomic
def pipeline_import(
    *, workspace: Workspace, user, data: Any, name: str | None = None, filename: str = ""
) -> Pipeline:
    """A new pipeline from an exported document (or a bare graph) given as bytes, str or dict."""
    require_editor(user=user, workspace=workspace)
    graph, doc_name, description = _import_document(data)
    fallback = filename.rsplit(".", 1)[0] if filename else "Imported pipeline"
    return pipeline_create(
        workspace=workspace, user=user, name=(name or doc_name or fallback)[:MAX_NAME],
        description=description[:MAX_DESCRIPTION], graph=graph,
        message=f"Imported from {filename[:100]}" if filename else "Imported",
    )


@transaction.atomic
def pipeline_create_from_template(
    *, workspace: Workspace, user, slug: str, name: str | None = None
) -> Pipeline:
    from llmops.builder.selectors import template_get

    template = template_get(slug=slug)
    return pipeline_create(
        workspace=workspace, user=user, name=name or template["name"],
        description=template.get("description", ""), graph=template["graph"],
        message=f"From template “{template['name']}”",
    )
