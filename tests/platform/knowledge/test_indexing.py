"""Indexes in the database: built by the worker's task body (called here as a function),
chunks mirrored in the table, documents marked, follow / delete / register from a node."""

from __future__ import annotations

import json

import pytest

from llmops.knowledge import indexing
from llmops.knowledge.models import Chunk, Document, DocumentState, IndexStatus, VectorIndex
from llmops.knowledge.resources import collection_resource, vector_index_resource
from llmops.knowledge.search import highlight, match_spans, query_terms
from pipelines.context import NodeFailure
from tests.platform.knowledge.conftest import CORPUS

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed(user, make_collection, add_documents, build_index):
    collection = make_collection()
    add_documents(collection, CORPUS)
    index = indexing.index_create(user=user, collection=collection, chunk_size=128, chunk_overlap=16)
    assert index.sync_pending and index.status == IndexStatus.BUILDING and index.version == 0
    build_index(index)
    return collection, index


def test_build_fills_the_chunk_table_and_marks_documents(indexed, media_root):
    collection, index = indexed
    assert index.status == IndexStatus.READY and index.version == 1 and not index.sync_pending
    assert index.dimension == 384 and index.built_type == "flat"
    assert index.vectors == Chunk.objects.filter(index=index).count() > 4
    assert set(collection.documents.values_list("state", flat=True)) == {DocumentState.INDEXED}
    folder = media_root / index.path
    assert sorted(p.name for p in folder.iterdir()) == ["chunks.jsonl", "index.faiss", "meta.json"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["collection"] == collection.pk and meta["index"] == index.pk
    chunk = Chunk.objects.filter(index=index, document__name="refunds.pdf").first()
    assert (
        "ten business days"
        in Chunk.objects.filter(document__name="refunds.pdf").values_list("text", flat=True)[0] + chunk.text
    )
    assert chunk.metadata["page"] in (1, 2)


def test_following_index_takes_new_uploads_incrementally(indexed, add_documents, build_index):
    collection, index = indexed
    before = set(Chunk.objects.filter(index=index).values_list("vector_id", flat=True))
    add_documents(collection, {"travel.txt": b"Travel policy\n\nTrains for trips under four hours."})
    index.refresh_from_db()
    assert index.sync_pending  # the upload queued a sync
    build_index(index)
    assert index.version == 2
    after = set(Chunk.objects.filter(index=index).values_list("vector_id", flat=True))
    assert before < after, "old chunks kept their ids; only the new document was added"
    assert Document.objects.get(name="travel.txt").state == DocumentState.INDEXED
    assert "+1 new" in index.message


def test_a_second_sync_with_nothing_new_changes_nothing(indexed, build_index):
    _, index = indexed
    result = build_index(index)
    assert result == {"index": index.pk, "unchanged": True}
    assert index.version == 1 and index.status == IndexStatus.READY


def test_deleting_a_document_removes_its_chunks_and_vectors(indexed, user, build_index, media_root):
    from llmops.knowledge.services import document_delete

    collection, index = indexed
    payroll = Document.objects.get(name="payroll.html")
    document_delete(user=user, document=payroll)
    assert not Chunk.objects.filter(document_id=payroll.pk).exists()  # immediately
    index.refresh_from_db()
    assert index.sync_pending
    build_index(index)
    meta = json.loads((media_root / index.path / "meta.json").read_text())
    assert str(payroll.pk) not in meta["documents"]
    assert meta["count"] == index.vectors == Chunk.objects.filter(index=index).count()
    assert "-1 removed" in index.message


def test_a_non_following_index_does_not_take_uploads(user, make_collection, add_documents, build_index):
    collection = make_collection()
    add_documents(collection, {"a.md": b"# A\n\nalpha text"})
    index = indexing.index_create(user=user, collection=collection, follow_collection=False)
    build_index(index)
    VectorIndex.objects.filter(pk=index.pk).update(sync_pending=False)
    add_documents(collection, {"b.md": b"# B\n\nbeta text"})
    index.refresh_from_db()
    assert not index.sync_pending
    assert Document.objects.get(name="b.md").state == DocumentState.PARSED


def test_index_settings_are_validated(user, make_collection):
    from django.core.exceptions import ValidationError

    collection = make_collection()
    with pytest.raises(ValidationError, match="overlap"):
        indexing.index_create(user=user, collection=collection, chunk_size=64, chunk_overlap=64)
    with pytest.raises(ValidationError, match="index_type"):
        indexing.index_create(user=user, collection=collection, index_type="annoy")


def test_collection_resource_gives_plain_data_within_the_workspace(
    user, other_user, make_collection, add_documents, media_root
):
    collection = make_collection()
    add_documents(collection, {"ok.md": b"# Hi\n\nthere", "bad.pdf": b"%PDF-1.4 garbage"})
    documents = collection_resource(workspace_id=collection.workspace_id, ref=collection.pk)
    assert [d["name"] for d in documents] == ["ok.md"]  # failed documents are left out
    item = documents[0]
    assert item["path"].startswith(str(media_root)) and item["parsed_path"] == item["text_path"]
    assert {"id", "name", "content_type", "sha256", "kind", "size"} <= set(item)
    json.dumps(documents)  # plain data
    foreign = other_user.workspaces.get()
    with pytest.raises(NodeFailure, match="does not exist in this workspace"):
        collection_resource(workspace_id=foreign.pk, ref=collection.pk)
    with pytest.raises(NodeFailure):
        collection_resource(workspace_id=collection.workspace_id, ref="five")


def test_vector_index_resource_finds_the_matching_index(indexed):
    collection, index = indexed
    ref = {
        "collection": collection.pk,
        "embedding_model": "all-MiniLM-L6-v2",
        "chunk_size": 128,
        "chunk_overlap": 16,
        "metric": "cosine",
        "index_type": "auto",
    }
    found = vector_index_resource(workspace_id=collection.workspace_id, ref=ref)
    assert found["id"] == index.pk and found["version"] == 1 and found["path"].endswith(index.path)
    assert vector_index_resource(workspace_id=collection.workspace_id, ref={**ref, "chunk_size": 64}) is None
    assert vector_index_resource(workspace_id=collection.workspace_id, ref=index.pk)["id"] == index.pk
    with pytest.raises(NodeFailure):
        vector_index_resource(workspace_id=collection.workspace_id + 1000, ref=index.pk)


def test_register_an_index_built_by_a_pipeline_node(user, make_collection, add_documents, tmp_path):
    """What the run engine does after vectorize.faiss succeeds (see the issue notes)."""
    from pipelines.context import ArtifactRef
    from pipelines.nodes.source_documents.run import run as source_documents
    from pipelines.nodes.source_documents.spec import SPEC as SOURCE
    from pipelines.nodes.vectorize_faiss.run import run as vectorize
    from pipelines.nodes.vectorize_faiss.spec import SPEC as VECTORIZE
    from pipelines.types import ArtifactType
    from tests.pipelines.nodes.recording import RecordingContext

    collection = make_collection()
    add_documents(collection, CORPUS)
    ws = collection.workspace_id
    resources = {
        "collection": lambda ref: collection_resource(workspace_id=ws, ref=ref),
        "vector_index": lambda ref: vector_index_resource(workspace_id=ws, ref=ref),
    }
    docs = source_documents(
        RecordingContext(tmp_path / "a", resources=resources),
        {},
        SOURCE.params.model_validate({"collection": collection.pk}),
    )["documents"]
    params = VECTORIZE.params.model_validate({"follow_collection": True})
    out = vectorize(
        RecordingContext(tmp_path / "b", resources=resources),
        {"documents": ArtifactRef(ArtifactType.DOCUMENTS, docs.path)},
        params,
    )["index"]

    index = indexing.index_register_from_artifact(
        workspace_id=ws, path=out.path, metadata=out.metadata, artifact_key="k1"
    )
    assert index.version == 1 and index.status == IndexStatus.READY and index.follow_collection
    assert index.vectors == out.metadata["chunks"] == Chunk.objects.filter(index=index).count()
    again = indexing.index_register_from_artifact(workspace_id=ws, path=out.path, artifact_key="k1")
    assert again.pk == index.pk and again.version == 1

    # a re-run finds this index through the resource and only adds what is new
    add_documents(collection, {"travel.txt": b"Travel policy\n\nTrains for trips under four hours."})
    docs = source_documents(
        RecordingContext(tmp_path / "c", resources=resources),
        {},
        SOURCE.params.model_validate({"collection": collection.pk}),
    )["documents"]
    out = vectorize(
        RecordingContext(tmp_path / "d", resources=resources),
        {"documents": ArtifactRef(ArtifactType.DOCUMENTS, docs.path)},
        params,
    )["index"]
    assert out.metadata["incremental"]
    before = set(Chunk.objects.filter(index=index).values_list("vector_id", flat=True))
    index = indexing.index_register_from_artifact(workspace_id=ws, path=out.path, artifact_key="k2")
    after = set(Chunk.objects.filter(index=index).values_list("vector_id", flat=True))
    assert index.version == 2 and before < after
    with pytest.raises(Exception, match="not in workspace"):
        indexing.index_register_from_artifact(workspace_id=ws + 1000, path=out.path)


def test_search_without_a_serve_worker_is_a_clear_503(indexed, api, settings):
    settings.LLMOPS_SEARCH_TIMEOUT_S = 1
    _, index = indexed
    response = api.post(f"/indexes/{index.pk}/search", {"query": "refunds", "k": 3})
    assert response.status_code == 503
    assert "No search worker is running" in response.json()["detail"]


def test_search_input_is_checked_before_asking_a_worker(indexed, api, user, make_collection):
    _, index = indexed
    assert api.post(f"/indexes/{index.pk}/search", {"query": ""}).status_code == 422
    assert api.post(f"/indexes/{index.pk}/search", {"query": "x", "k": 500}).status_code == 422
    wrong = api.post(f"/indexes/{index.pk}/search", {"query": "x", "model": "other/model"})
    assert wrong.status_code == 409 and "all-MiniLM-L6-v2" in wrong.json()["detail"]
    empty = indexing.index_create(user=user, collection=make_collection("Empty"))
    not_built = api.post(f"/indexes/{empty.pk}/search", {"query": "x"})
    assert not_built.status_code == 409 and "not been built" in not_built.json()["detail"]


def test_index_api_lists_and_creates(api, make_collection):
    collection = make_collection()
    response = api.post(
        f"/collections/{collection.pk}/indexes", {"chunk_size": 200, "follow_collection": False}
    )
    assert response.status_code == 201
    created = response.json()
    assert (
        created["chunk_size"] == 200 and created["status"] == "building" and not created["follow_collection"]
    )
    assert [i["id"] for i in api.get("/indexes").json()["items"]] == [created["id"]]
    assert api.get(f"/indexes?collection={collection.pk + 1}").json()["items"] == []
    assert api.post(f"/collections/{collection.pk}/indexes", {"chunk_size": 8}).status_code == 422
    patched = api.patch(f"/indexes/{created['id']}", {"follow_collection": True}).json()
    assert patched["follow_collection"]
    assert api.delete(f"/indexes/{created['id']}").status_code == 204


def test_highlighting_marks_query_words_and_escapes_the_rest():
    terms = query_terms("When are the salaries paid?")
    assert terms == ["salarie", "paid"]
    text = "<b>Salaries</b> are paid monthly; unpaid leave"
    spans = match_spans(text, terms)
    assert [text[a:b] for a, b in spans] == ["Salaries", "paid"]
    html = str(highlight(text, spans))
    assert html == "&lt;b&gt;<mark>Salaries</mark>&lt;/b&gt; are <mark>paid</mark> monthly; unpaid leave"
