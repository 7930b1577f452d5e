"""The seeded demo pipeline: documentation as documents, a valid graph, idempotent."""

from __future__ import annotations

import pytest

from llmops.endpoints.seed import PIPELINE_NAME, docs_graph, documentation_files, seed_demo
from tests.platform.endpoints.conftest import workspace_of

pytestmark = pytest.mark.django_db


def test_seed_creates_a_valid_ready_pipeline_once(user):
    from llmops.builder.models import Pipeline
    from llmops.builder.services import graph_validate
    from llmops.knowledge.models import Collection

    workspace = workspace_of(user)
    note = seed_demo(user=user, workspace=workspace)
    assert PIPELINE_NAME in note
    assert seed_demo(user=user, workspace=workspace) is None  # idempotent
    pipeline = Pipeline.objects.get(workspace=workspace, name=PIPELINE_NAME)
    graph = pipeline.latest_version.graph
    report = graph_validate(graph=graph)
    assert report["ok"], report
    kinds = sorted(n["kind"] for n in graph["nodes"])
    assert kinds.count("serve.rag") == 2 and kinds.count("publish.api") == 2
    modes = {n["params"]["mode"] for n in graph["nodes"] if n["kind"] == "serve.rag"}
    assert modes == {"extractive", "generate"}
    collection = Collection.objects.get(workspace=workspace)
    names = set(collection.documents.values_list("name", flat=True))
    assert "README.md" in names and len(names) == len(documentation_files())


def test_the_graph_points_at_the_collection():
    graph = docs_graph(42)
    assert next(n for n in graph["nodes"] if n["kind"] == "source.documents")["params"]["collection"] == 42
