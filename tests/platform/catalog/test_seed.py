from __future__ import annotations

import pytest

from llmops.builder.models import Pipeline
from llmops.catalog.models import Dataset
from llmops.catalog.seed import seed_demo
from pipelines.validation import validate_graph


@pytest.mark.django_db
def test_seed_creates_runnable_finetune_pipelines_once(user):
    workspace = user.workspaces.get()
    first = seed_demo(user=user, workspace=workspace)
    assert "Text classification with LoRA (demo)" in first
    assert seed_demo(user=user, workspace=workspace) is None  # idempotent
    assert Dataset.objects.filter(workspace=workspace).count() == 2
    pipelines = Pipeline.objects.filter(workspace=workspace)
    assert pipelines.count() == 2
    for pipeline in pipelines:
        graph = pipeline.versions.order_by("-number").first().graph
        report = validate_graph(graph)
        assert report.ok, report.to_dict()["errors"]
