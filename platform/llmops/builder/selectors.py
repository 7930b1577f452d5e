"""Reads for pipelines, node kinds and templates. Every pipeline read is scoped with for_user."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery
from django.http import Http404

from llmops.builder.models import Pipeline, PipelineVersion


def pipeline_list(*, user, workspace=None):
    """The user's pipelines, newest first, each annotated with ``latest_version_pk``."""
    latest = PipelineVersion.objects.filter(pipeline_id=OuterRef("pk")).order_by("-number").values("pk")[:1]
    qs = Pipeline.objects.for_user(user).annotate(latest_version_pk=Subquery(latest))
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    return qs.order_by("-updated_at", "-id")


def with_latest(pipelines) -> list[Pipeline]:
    """Sets ``.latest`` (the latest version) on each pipeline of ``pipeline_list``, in one query."""
    pipelines = list(pipelines)
    versions = PipelineVersion.objects.select_related("created_by").in_bulk(
        [p.latest_version_pk for p in pipelines if p.latest_version_pk])
    for pipeline in pipelines:
        pipeline.latest = versions.get(pipeline.latest_version_pk)
    return pipelines


def pipeline_get(*, user, pipeline_id: int) -> Pipeline:
    """The pipeline if the user may see it; another workspace's pipeline is a 404."""
    if not 0 < pipeline_id < 2**63:  # the database cannot even look it up
        raise Http404("No such pipeline")
    pipeline = (
        Pipeline.objects.for_user(user).select_related("workspace").filter(pk=pipeline_id).first()
    )
    if pipeline is None:
        raise Http404("No such pipeline")
    return pipeline


def pipeline_versions(*, pipeline: Pipeline):
    return pipeline.versions.select_related("created_by").order_by("-number")


def pipeline_version_get(*, pipeline: Pipeline, number: int | None = None) -> PipelineVersion:
    """A version by number, or the latest when number is None; 404 when there is none."""
    if number is not None and not 0 < number < 2**31:
        raise Http404("No such version")
    qs = pipeline.versions.select_related("created_by")
    version = qs.filter(number=number).first() if number is not None else qs.order_by("-number").first()
    if version is None:
        raise Http404("No such version")
    return version


def node_kinds() -> list[dict[str, Any]]:
    """Every node kind as the UI and the API see it: label, ports, JSON schema, defaults."""
    from pipelines.registry import all_specs

    return [spec.to_dict() for spec in all_specs()]


def node_spec(*, kind: str):
    """The spec of a kind, or 404."""
    from pipelines.registry import find_spec

    spec = find_spec(kind)
    if spec is None:
        raise Http404(f"Unknown node kind {kind[:100]!r}")
    return spec


def palette() -> list[dict[str, Any]]:
    """Node kinds grouped by category, in palette order: [{"category", "kinds": [...]}]."""
    from pipelines.registry import specs_by_category

    return [
        {"category": category, "kinds": [spec.to_dict() for spec in specs]}
        for category, specs in specs_by_category().items()
    ]


def template_list() -> list[dict[str, Any]]:
    from pipelines.gallery import TEMPLATES

    return list(TEMPLATES)


def template_cards() -> list[dict[str, Any]]:
    """Templates with the icon and label of each step, for the gallery."""
    from pipelines.registry import find_spec

    cards = []
    for template in template_list():
        steps = []
        for node in template["graph"].get("nodes", []):
            spec = find_spec(node.get("kind", ""))
            label = spec.label if spec else node.get("kind")
            steps.append({"icon": spec.icon if spec else "❓", "label": label})
        cards.append({**template, "steps": steps})
    return cards


def template_get(*, slug: str) -> dict[str, Any]:
    for template in template_list():
        if template["slug"] == slug:
            return template
    raise Http404("No such template")
