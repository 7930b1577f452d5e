"""documents -> vectorize.faiss run through the run engine on a real worker: progress events
reach the run's event log, the index is an artifact, and the knowledge hook registers it."""

from __future__ import annotations

import time

import pytest

from tests.conftest import worker_env
from tests.platform.knowledge.conftest import CORPUS

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _wait_run(run_id: int, timeout: float = 240):
    from llmops.runs.models import NodeRun, PipelineRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = PipelineRun.objects.get(pk=run_id)
        if run.status in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.3)
    nodes = list(NodeRun.objects.filter(run_id=run_id).values_list("node_id", "status", "error"))
    raise AssertionError(f"run {run_id} still {run.status}: {nodes}")


def test_vectorize_node_through_the_engine(user, make_collection, add_documents, start_worker, media_root):
    from llmops.builder.services import pipeline_create
    from llmops.knowledge.indexing import index_register_from_artifact
    from llmops.knowledge.models import Chunk
    from llmops.runs.models import Artifact, NodeRun
    from llmops.runs.selectors import events_after
    from llmops.runs.services import run_start
    from llmops.runs.storage import materialise

    collection = make_collection()
    add_documents(collection, CORPUS)
    graph = {
        "version": 1,
        "nodes": [
            {
                "id": "docs",
                "kind": "source.documents",
                "params": {"collection": collection.pk},
                "position": [0, 0],
            },
            {
                "id": "index",
                "kind": "vectorize.faiss",
                "params": {"chunk_size": 64, "chunk_overlap": 8, "batch_size": 2},
                "position": [300, 0],
            },
        ],
        "edges": [{"from": ["docs", "documents"], "to": ["index", "documents"]}],
    }
    pipeline = pipeline_create(workspace=collection.workspace, user=user, name="vectorize", graph=graph)
    start_worker(
        "cpu,gpu",
        name="engine-kn",
        env=worker_env(
            LLMOPS_MEDIA_ROOT=str(media_root),
            HF_HUB_OFFLINE="1",
            LLMOPS_DEVICE="cpu",
            LLMOPS_PROGRESS_INTERVAL_S="0.05",
        ),
    )

    run = _wait_run(run_start(user=user, pipeline=pipeline).pk)
    nodes = {n.node_id: n for n in NodeRun.objects.filter(run=run)}
    assert run.status == "succeeded", {k: (n.status, n.error) for k, n in nodes.items()}

    events = [e for e in events_after(run_id=run.pk, after=0) if e.get("node") == "index"]
    messages = [e.get("message") or "" for e in events if e["type"] == "progress"]
    assert any(m.startswith("Parsed") for m in messages), messages
    assert any(m.startswith("Embedded") for m in messages), messages
    progress = [e["progress"] for e in events if e["type"] == "progress" and e.get("progress") is not None]
    assert progress == sorted(progress)

    artifact = Artifact.objects.get(pk=nodes["index"].outputs["index"])
    assert artifact.type == "VectorIndex" and artifact.metadata["collection"] == collection.pk
    folder = materialise(artifact)
    assert {"index.faiss", "chunks.jsonl", "meta.json"} <= {p.name for p in folder.iterdir()}

    index = index_register_from_artifact(
        workspace_id=collection.workspace_id,
        path=folder,
        metadata=artifact.metadata,
        artifact_key=artifact.key,
    )
    assert index.status == "ready" and index.vectors == artifact.metadata["chunks"]
    assert Chunk.objects.filter(index=index).count() == index.vectors
