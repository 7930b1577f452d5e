"""Services: versions are numbered and immutable, restore/duplicate/import/export/delete."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

from llmops.builder import selectors, services
from llmops.builder.models import Pipeline, PipelineVersion, VersionImmutableError

pytestmark = pytest.mark.django_db


def test_create_saves_version_one_with_validation_summary(pipeline, user):
    version = pipeline.latest_version
    assert version.number == 1
    assert version.created_by == user
    assert version.validation == {"ok": True, "errors": 0, "warnings": 0}
    assert version.graph["nodes"][1]["params"] == {"chunk_size": 300}


def test_create_without_graph_is_an_empty_canvas(workspace, user):
    pipeline = services.pipeline_create(workspace=workspace, user=user, name="Blank")
    assert pipeline.latest_version.graph == {"version": 1, "nodes": [], "edges": []}


def test_each_save_appends_a_numbered_version(pipeline, user, graph):
    graph["nodes"][1]["params"]["chunk_size"] = 400
    v2 = services.pipeline_save_version(pipeline=pipeline, user=user, graph=graph, message="bigger chunks")
    v3 = services.pipeline_save_version(pipeline=pipeline, user=user, graph={"nodes": []})
    assert [v.number for v in selectors.pipeline_versions(pipeline=pipeline)] == [3, 2, 1]
    assert v2.message == "bigger chunks" and v2.graph["nodes"][1]["params"]["chunk_size"] == 400
    assert v3.graph == {"version": 1, "nodes": [], "edges": []}


def test_versions_are_immutable(pipeline):
    version = pipeline.latest_version
    version.message = "rewritten"
    with pytest.raises(VersionImmutableError):
        version.save()
    assert PipelineVersion.objects.get(pk=version.pk).message != "rewritten"


def test_semantic_errors_are_saved_as_a_draft(pipeline, user, graph):
    graph["edges"].append({"from": ["model", "model"], "to": ["index", "documents"]})  # wrong type
    graph["nodes"][0]["params"] = {}  # missing collection
    version = services.pipeline_save_version(pipeline=pipeline, user=user, graph=graph)
    assert version.validation["ok"] is False
    assert version.validation["errors"] >= 2


DEEP = json.loads("[" * 25 + "]" * 25)


@pytest.mark.parametrize(
    "bad, expected",
    [
        ([], "must be a JSON object"),
        ({"nodes": "x"}, "nodes"),
        ({"nodes": [{"id": "a"}]}, "kind"),
        ({"nodes": [], "colour": "red"}, "colour"),
        ({"nodes": [{"id": "a b", "kind": "quantize"}]}, "id"),
        ({"nodes": [{"id": "a", "kind": "quantize"}, {"id": "a", "kind": "quantize"}]}, "unique"),
        ({"version": 2}, "version"),
        ({"nodes": [{"id": "a", "kind": "quantize", "params": {"x": float("nan")}}]}, "NaN"),
        ({"nodes": [{"id": "a", "kind": "quantize", "params": {"x": "a\x00"}}]}, "NUL"),
        ({"nodes": [{"id": "a", "kind": "quantize", "params": {"x": DEEP}}]}, "nested"),
    ],
)
def test_malformed_graphs_are_refused_and_nothing_is_written(pipeline, user, bad, expected):
    with pytest.raises(services.GraphMalformed) as info:
        services.pipeline_save_version(pipeline=pipeline, user=user, graph=bad)
    assert expected in info.value.message
    assert pipeline.versions.count() == 1


def test_too_many_nodes_is_too_large(pipeline, user):
    nodes = [{"id": f"n{i}", "kind": "quantize"} for i in range(5000)]
    with pytest.raises(services.GraphTooLarge, match="5000 nodes"):
        services.pipeline_save_version(pipeline=pipeline, user=user, graph={"nodes": nodes})


def test_update_is_atomic(pipeline, user):
    with pytest.raises(services.GraphMalformed):
        services.pipeline_update(pipeline=pipeline, user=user, name="Renamed", graph={"nodes": 1})
    pipeline.refresh_from_db()
    assert pipeline.name == "Docs Q&A"
    assert pipeline.versions.count() == 1


def test_restore_creates_a_new_version_with_the_old_graph(pipeline, user):
    services.pipeline_save_version(pipeline=pipeline, user=user, graph={"nodes": []})
    restored = services.pipeline_restore_version(pipeline=pipeline, user=user, number=1)
    assert restored.number == 3
    assert restored.graph == pipeline.versions.get(number=1).graph
    assert restored.message == "Restored version 1"
    with pytest.raises(services.PipelineError):
        services.pipeline_restore_version(pipeline=pipeline, user=user, number=99)


def test_duplicate_copies_the_latest_graph(pipeline, user):
    copy = services.pipeline_duplicate(pipeline=pipeline, user=user)
    assert copy.pk != pipeline.pk and copy.workspace_id == pipeline.workspace_id
    assert copy.name == "Copy of Docs Q&A"
    assert copy.latest_version.number == 1
    assert copy.latest_version.graph == pipeline.latest_version.graph


def test_export_then_import_round_trips(pipeline, user, workspace):
    document = services.pipeline_export(pipeline=pipeline)
    assert document["format"] == "llmops.pipeline" and document["version"] == 1
    imported = services.pipeline_import(workspace=workspace, user=user, data=json.dumps(document).encode())
    assert imported.name == "Docs Q&A"
    assert imported.latest_version.graph == pipeline.latest_version.graph


def test_import_accepts_a_bare_graph_and_refuses_junk(workspace, user, graph):
    imported = services.pipeline_import(workspace=workspace, user=user, data=graph, filename="mine.json")
    assert imported.name == "mine"
    before = Pipeline.objects.count()
    for junk in (
        b"not json",
        b"[1, 2]",
        json.dumps({"format": "other", "graph": {}}).encode(),
        json.dumps({"graph": {"nodes": 3}}).encode(),
    ):
        with pytest.raises(services.PipelineError):
            services.pipeline_import(workspace=workspace, user=user, data=junk)
    assert Pipeline.objects.count() == before


def test_delete_hides_the_pipeline_but_keeps_versions(pipeline, user):
    services.pipeline_delete(pipeline=pipeline, user=user)
    assert not selectors.pipeline_list(user=user).exists()
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1
    with pytest.raises(Exception, match="No such pipeline"):
        selectors.pipeline_get(user=user, pipeline_id=pipeline.pk)


def test_every_template_creates_a_pipeline(workspace, user):
    for template in selectors.template_list():
        pipeline = services.pipeline_create_from_template(
            workspace=workspace, user=user, slug=template["slug"]
        )
        assert pipeline.name == template["name"]
        assert pipeline.latest_version.node_count == len(template["graph"]["nodes"])


def test_viewers_cannot_write(pipeline, viewer, workspace, graph):
    with pytest.raises(PermissionDenied):
        services.pipeline_save_version(pipeline=pipeline, user=viewer, graph=graph)
    with pytest.raises(PermissionDenied):
        services.pipeline_create(workspace=workspace, user=viewer, name="x")
    with pytest.raises(PermissionDenied):
        services.pipeline_delete(pipeline=pipeline, user=viewer)
    assert selectors.pipeline_get(user=viewer, pipeline_id=pipeline.pk) == pipeline  # but can read


def test_other_workspaces_are_invisible(pipeline, other_user):
    assert not selectors.pipeline_list(user=other_user).exists()
    with pytest.raises(Exception, match="No such pipeline"):
        selectors.pipeline_get(user=other_user, pipeline_id=pipeline.pk)


def test_a_save_without_a_message_describes_the_change(pipeline, user, graph):
    graph["nodes"][1]["params"]["chunk_size"] = 128
    graph["nodes"].append({"id": "quant", "kind": "quantize", "params": {}, "position": [0, 400]})
    graph["edges"].append({"from": ["model", "model"], "to": ["quant", "model"]})
    version = services.pipeline_save_version(pipeline=pipeline, user=user, graph=graph)
    assert version.message == "Added quant; changed settings of index; 1 wire added"
    graph["nodes"][0]["position"] = [10, 10]
    assert services.pipeline_save_version(pipeline=pipeline, user=user, graph=graph).message == "Moved steps"
