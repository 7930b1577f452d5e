"""The "source.documents" and "vectorize.faiss" node implementations, run with a recording
context (the engine-driven run is tested in tests/platform/knowledge)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pipelines.context import ArtifactRef, NodeCancelled, NodeFailure
from pipelines.docs import parse, sniff
from pipelines.nodes.source_documents.run import run as source_documents
from pipelines.nodes.source_documents.spec import SPEC as SOURCE_SPEC
from pipelines.nodes.vectorize_faiss.run import run as vectorize
from pipelines.nodes.vectorize_faiss.spec import SPEC as VECTORIZE_SPEC
from pipelines.types import ArtifactType
from pipelines.vectorstore import VectorStore
from tests.pipelines.docs.samples import HTML, MARKDOWN, make_pdf
from tests.pipelines.nodes.recording import RecordingContext

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FILES = {
    "garden.md": MARKDOWN.encode(),
    "payroll.html": HTML.encode(),
    "refunds.pdf": make_pdf(["Refund policy", "Refunds are paid back within ten business days."]),
    "travel.txt": b"Travel policy\n\nBook trains for trips under four hours; flights need approval.",
}


@pytest.fixture
def collection(tmp_path):
    """What the platform's collection resource returns: stored files + parsed JSON."""
    store = tmp_path / "media"
    store.mkdir()
    documents = []
    for n, (name, data) in enumerate(FILES.items(), start=1):
        path = store / f"{n:032x}{os.path.splitext(name)[1]}"
        path.write_bytes(data)
        kind = sniff(data, name).kind
        parsed = store / f"{path.name}.parsed.json"
        if n != 4:  # one document without extracted text: the node copies the original instead
            parsed.write_text(json.dumps(parse(data, kind).to_json()))
        documents.append(
            {
                "id": n,
                "name": name,
                "path": str(path),
                "kind": kind,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": "x",
                "parsed_path": str(parsed) if n != 4 else None,
            }
        )
    return documents


def _documents_artifact(tmp_path, collection):
    ctx = RecordingContext(
        tmp_path / "w1", resources={"collection": lambda ref: collection if ref == 9 else []}
    )
    out = source_documents(ctx, {}, SOURCE_SPEC.params.model_validate({"collection": 9}))["documents"]
    return ctx, out


def test_source_documents_freezes_the_collection(tmp_path, collection):
    ctx, out = _documents_artifact(tmp_path, collection)
    assert out.type == ArtifactType.DOCUMENTS and out.metadata["documents"] == 4
    manifest = json.loads((out.path / "manifest.json").read_text())
    assert manifest["collection"] == 9 and [d["id"] for d in manifest["documents"]] == [1, 2, 3, 4]
    assert manifest["documents"][0]["parsed"] == "parsed/1.json"
    assert (
        manifest["documents"][3]["file"].startswith("files/4") and manifest["documents"][3]["parsed"] is None
    )
    assert (out.path / "files" / "4.txt").read_bytes() == FILES["travel.txt"]
    assert ctx.messages[-1] == "Collected 4/4 documents"


def test_source_documents_refuses_an_empty_collection(tmp_path):
    ctx = RecordingContext(tmp_path, resources={"collection": lambda ref: []})
    with pytest.raises(NodeFailure, match="no readable documents"):
        source_documents(ctx, {}, SOURCE_SPEC.params.model_validate({"collection": 3}))


def test_vectorize_builds_a_searchable_index_with_progress(tmp_path, collection):
    _, documents = _documents_artifact(tmp_path, collection)
    ctx = RecordingContext(tmp_path / "w2")  # no vector_index resource: builds from scratch
    params = VECTORIZE_SPEC.params.model_validate({"chunk_size": 128, "chunk_overlap": 16, "batch_size": 4})
    inputs = {"documents": ArtifactRef(ArtifactType.DOCUMENTS, documents.path, documents.metadata)}
    out = vectorize(ctx, inputs, params)["index"]
    assert out.type == ArtifactType.VECTOR_INDEX
    assert sorted(p.name for p in out.path.iterdir()) == ["chunks.jsonl", "index.faiss", "meta.json"]
    assert out.metadata["model"] == "all-MiniLM-L6-v2" and out.metadata["dimension"] == 384
    assert out.metadata["documents"] == 4 and out.metadata["collection"] == 9
    meta = json.loads((out.path / "meta.json").read_text())
    assert meta["report"]["added"] == [1, 2, 3, 4] and meta["requested"]["chunk_size"] == 128

    assert "Parsed 4/4 documents" in ctx.messages
    embedded = [e for e in ctx.events if e["message"].startswith("Embedded")]
    assert embedded and embedded[-1]["chunks_done"] == embedded[-1]["chunks_total"] == out.metadata["chunks"]
    assert all(e["chunks_per_s"] > 0 and "eta_s" in e for e in embedded)
    assert ctx.events[-1]["message"].startswith("Index ready")
    assert any("Building from scratch" in message for _, message in ctx.logs)

    from pipelines.vectorstore import get_embedder

    hits = VectorStore.load(out.path).search("how long do refunds take", get_embedder(), k=1)
    assert hits[0][0]["document"] == "refunds.pdf"


def test_vectorize_updates_the_previous_index_incrementally(tmp_path, collection):
    _, first_docs = _documents_artifact(tmp_path / "a", collection[:2])
    params = VECTORIZE_SPEC.params.model_validate({})
    first = vectorize(
        RecordingContext(tmp_path / "w1"),
        {"documents": ArtifactRef(ArtifactType.DOCUMENTS, first_docs.path, first_docs.metadata)},
        params,
    )["index"]
    previous = {"id": 4, "version": 1, "path": str(first.path)}
    _, docs = _documents_artifact(tmp_path / "b", collection)
    ctx = RecordingContext(tmp_path / "w2", resources={"vector_index": lambda ref: previous})
    out = vectorize(ctx, {"documents": ArtifactRef(ArtifactType.DOCUMENTS, docs.path, docs.metadata)}, params)
    meta = json.loads((out["index"].path / "meta.json").read_text())
    assert meta["report"]["added"] == [3, 4] and meta["report"]["reused_previous"]
    assert meta["base"] == {"index": 4, "version": 1}
    assert out["index"].metadata["incremental"] is True


def test_vectorize_cancels_between_batches(tmp_path, collection):
    _, docs = _documents_artifact(tmp_path, collection)
    ctx = RecordingContext(tmp_path / "w2", cancel_after_progress=3)
    with pytest.raises(NodeCancelled):
        vectorize(
            ctx,
            {"documents": ArtifactRef(ArtifactType.DOCUMENTS, docs.path, docs.metadata)},
            VECTORIZE_SPEC.params.model_validate({"batch_size": 1}),
        )


def test_vectorize_reads_a_plain_folder_of_files(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    ctx = RecordingContext(tmp_path / "w")
    out = vectorize(
        ctx,
        {"documents": ArtifactRef(ArtifactType.DOCUMENTS, folder)},
        VECTORIZE_SPEC.params.model_validate({}),
    )["index"]
    assert out.metadata["documents"] == 4 and out.metadata["collection"] is None


def test_vectorize_fails_clearly_when_nothing_is_readable(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.txt").write_bytes("été café".encode("latin-1"))
    with pytest.raises(NodeFailure, match="No passage"):
        vectorize(
            RecordingContext(tmp_path / "w"),
            {"documents": ArtifactRef(ArtifactType.DOCUMENTS, folder)},
            VECTORIZE_SPEC.params.model_validate({}),
        )


def test_vectorize_unknown_model_is_a_node_failure(tmp_path, collection):
    _, docs = _documents_artifact(tmp_path, collection)
    with pytest.raises(NodeFailure, match="Cannot load the embedding model"):
        vectorize(
            RecordingContext(tmp_path / "w"),
            {"documents": ArtifactRef(ArtifactType.DOCUMENTS, docs.path)},
            VECTORIZE_SPEC.params.model_validate({"embedding_model": str(tmp_path / "nope")}),
        )
