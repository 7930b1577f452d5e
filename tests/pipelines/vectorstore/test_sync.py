"""Building, searching and incrementally updating an index with the real MiniLM."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.docs import DocumentError
from pipelines.vectorstore import (
    BuildSettings,
    IndexMismatch,
    SourceDocument,
    VectorStore,
    faiss_index,
    search_folder,
    sync_index,
)
from pipelines.vectorstore.embed import bundled_model_path, load_embedder
from tests.pipelines.docs.samples import HTML, MARKDOWN, make_docx, make_encrypted_pdf, make_pdf

TOPICS = {
    "garden.md": MARKDOWN,
    "payroll.html": HTML,
    "travel.txt": "Travel policy\n\nBook trains for trips under four hours. Flights need approval.",
    "security.txt": "Password rules\n\nPasswords must have at least twelve characters, changed every year.",
}


class CountingEmbedder:
    """The real embedder, counting the texts it embeds (to prove only new documents are)."""

    def __init__(self, inner):
        self.inner, self.embedded = inner, 0
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts, **kwargs):
        self.embedded += len(texts)
        return self.inner.encode(texts, **kwargs)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    documents = []
    for n, (name, text) in enumerate(TOPICS.items(), start=1):
        (folder / name).write_text(text, encoding="utf-8")
        documents.append(SourceDocument(id=n, name=name, sha256=f"sha-{n}", path=str(folder / name)))
    pdf = folder / "refunds.pdf"
    pdf.write_bytes(
        make_pdf(["Refund policy", "Refunds are paid back within ten business days of the request."])
    )
    documents.append(SourceDocument(id=5, name="refunds.pdf", sha256="sha-5", kind="pdf", path=str(pdf)))
    return folder, documents


def _ask(folder, embedder, question, k=1):
    return VectorStore.load(folder).search(question, embedder, k)


def test_a_question_finds_the_passage_that_answers_it(corpus, embedder, tmp_path):
    _, documents = corpus
    report = sync_index(
        documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder
    )
    assert report.documents == 5 and report.count >= 5 and report.index_type == "flat"
    for question, name, words in [
        ("when should I water my tomato plants?", "garden.md", "twice a week"),
        ("what day are salaries paid", "payroll.html", "last working day"),
        ("can I take a plane for a business trip", "travel.txt", "Flights need approval"),
        ("how long is a password", "security.txt", "twelve characters"),
        ("how many days until I get my money back", "refunds.pdf", "ten business days"),
    ]:
        ((record, score),) = _ask(tmp_path / "v1", embedder, question)
        assert record["document"] == name, question
        assert words in record["text"]
        assert score > 0.3
    pdf_hit = _ask(tmp_path / "v1", embedder, "refund within ten business days")[0][0]
    assert pdf_hit["metadata"]["page"] in (1, 2)


def test_files_on_disk_and_meta_record_the_model(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(
        documents=documents,
        settings=BuildSettings(chunk_size=128, chunk_overlap=16),
        out_dir=tmp_path / "v1",
        embedder=embedder,
        extra_meta={"collection": 7},
    )
    names = sorted(p.name for p in (tmp_path / "v1").iterdir())
    assert names == ["chunks.jsonl", "index.faiss", "meta.json"]
    meta = json.loads((tmp_path / "v1" / "meta.json").read_text())
    assert meta["model"] == "all-MiniLM-L6-v2" and meta["dimension"] == 384
    assert (meta["chunk_size"], meta["chunk_overlap"], meta["metric"]) == (128, 16, "cosine")
    assert meta["collection"] == 7 and set(meta["documents"]) == {"1", "2", "3", "4", "5"}
    lines = (tmp_path / "v1" / "chunks.jsonl").read_text().splitlines()
    assert len(lines) == meta["count"]
    first = json.loads(lines[0])
    assert {"id", "document_id", "document", "position", "text", "metadata"} <= set(first)


def test_adding_embeds_only_new_documents_and_deleting_removes_vectors(corpus, embedder, tmp_path):
    _, documents = corpus
    counting = CountingEmbedder(embedder)
    sync_index(documents=documents[:3], settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=counting)
    first = counting.embedded
    report = sync_index(
        documents=documents,
        settings=BuildSettings(),
        out_dir=tmp_path / "v2",
        previous_dir=tmp_path / "v1",
        embedder=counting,
    )
    assert report.added == [4, 5] and report.removed == [] and report.reused_previous
    new_chunks = report.chunks_added
    assert counting.embedded - first == new_chunks, "only the new documents were embedded"
    assert report.count == VectorStore.load(tmp_path / "v1").count + new_chunks

    # delete the payroll page: its passages are gone, ids of the others unchanged
    before = {r["id"] for r in VectorStore.load(tmp_path / "v2").chunks.values() if r["document_id"] != 2}
    report = sync_index(
        documents=[d for d in documents if d.id != 2],
        settings=BuildSettings(),
        out_dir=tmp_path / "v3",
        previous_dir=tmp_path / "v2",
        embedder=counting,
    )
    assert report.removed == [2] and report.chunks_added == 0
    store = VectorStore.load(tmp_path / "v3")
    assert {r["id"] for r in store.chunks.values()} == before
    hits = store.search("what day are salaries paid", embedder, k=10)
    assert all(record["document_id"] != 2 for record, _ in hits)
    assert store.count == len(store.chunks)


def test_a_changed_document_is_re_embedded(corpus, embedder, tmp_path):
    folder, documents = corpus
    sync_index(documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder)
    (folder / "travel.txt").write_text("Travel policy\n\nAll travel is by bicycle from now on.")
    documents[2] = SourceDocument(id=3, name="travel.txt", sha256="sha-3b", path=str(folder / "travel.txt"))
    report = sync_index(
        documents=documents,
        settings=BuildSettings(),
        out_dir=tmp_path / "v2",
        previous_dir=tmp_path / "v1",
        embedder=embedder,
    )
    assert report.removed == [3] and report.added == [3]
    ((record, _),) = _ask(tmp_path / "v2", embedder, "how do employees travel")
    assert "bicycle" in record["text"]


def test_changing_chunking_rebuilds_everything(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder)
    counting = CountingEmbedder(embedder)
    report = sync_index(
        documents=documents,
        settings=BuildSettings(chunk_size=32, chunk_overlap=4),
        out_dir=tmp_path / "v2",
        previous_dir=tmp_path / "v1",
        embedder=counting,
    )
    assert "chunk size changed" in report.rebuilt and not report.reused_previous
    assert counting.embedded == report.count == report.chunks_added


def test_nothing_to_do_writes_nothing_when_asked(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder)
    report = sync_index(
        documents=documents,
        settings=BuildSettings(),
        out_dir=tmp_path / "v2",
        previous_dir=tmp_path / "v1",
        embedder=embedder,
        skip_if_unchanged=True,
    )
    assert report.unchanged and not (tmp_path / "v2").exists()


def test_a_query_with_another_model_is_refused(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(documents=documents[:2], settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder)
    copy = tmp_path / "my-model"
    shutil.copytree(bundled_model_path(), copy)
    other = load_embedder(str(copy))
    assert other.name != embedder.name
    with pytest.raises(IndexMismatch, match="all-MiniLM-L6-v2"):
        VectorStore.load(tmp_path / "v1").search("anything", other)
    with pytest.raises(IndexMismatch):
        VectorStore.load(tmp_path / "v1").search_vectors(embedder.encode(["x"])[:, :100], 3)
    with pytest.raises(IndexMismatch):
        search_folder(tmp_path / "v1", "anything", model=str(copy))


def test_unreadable_documents_are_reported_not_fatal(corpus, embedder, tmp_path):
    folder, documents = corpus
    locked = folder / "locked.pdf"
    locked.write_bytes(make_encrypted_pdf(["secret"]))
    docx = folder / "handbook.docx"
    docx.write_bytes(make_docx([("Leave", ["Annual leave is twenty five days."])]))
    documents += [
        SourceDocument(id=6, name="locked.pdf", sha256="x6", path=str(locked)),
        SourceDocument(id=7, name="handbook.docx", sha256="x7", path=str(docx)),
        SourceDocument(id=8, name="gone.txt", sha256="x8", path=str(folder / "gone.txt")),
    ]
    report = sync_index(
        documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder
    )
    assert set(report.failed) == {6, 8}
    assert "password" in report.failed[6] and "cannot be read" in report.failed[8]
    ((record, _),) = _ask(tmp_path / "v1", embedder, "how many days of annual leave")
    assert record["document"] == "handbook.docx" and record["metadata"]["heading"] == "Leave"


def test_progress_reports_documents_then_chunks_with_rate_and_eta(corpus, embedder, tmp_path):
    _, documents = corpus
    events = []
    sync_index(
        documents=documents,
        settings=BuildSettings(batch_size=2),
        out_dir=tmp_path / "v1",
        embedder=embedder,
        progress=lambda done, total=None, message="", **m: events.append((done, message, m)),
    )
    messages = [m for _, m, _ in events]
    assert "Parsed 1/5 documents" in messages and "Parsed 5/5 documents" in messages
    embedded = [(m, metrics) for _, m, metrics in events if m.startswith("Embedded")]
    assert len(embedded) >= 3
    total = embedded[-1][1]["chunks_total"]
    assert embedded[-1][0] == f"Embedded {total}/{total} chunks"
    assert all(metrics["chunks_per_s"] > 0 and "eta_s" in metrics for _, metrics in embedded)
    fractions = [done for done, _, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1


def test_explicit_hnsw_removes_by_rebuilding_the_graph(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(
        documents=documents,
        settings=BuildSettings(index_type="hnsw"),
        out_dir=tmp_path / "v1",
        embedder=embedder,
    )
    report = sync_index(
        documents=documents[1:],
        settings=BuildSettings(index_type="hnsw"),
        out_dir=tmp_path / "v2",
        previous_dir=tmp_path / "v1",
        embedder=embedder,
    )
    assert report.index_type == "hnsw" and report.removed == [1]
    hits = VectorStore.load(tmp_path / "v2").search("watering tomatoes", embedder, k=20)
    assert hits and all(r["document_id"] != 1 for r, _ in hits)


def test_auto_type_follows_the_size(monkeypatch, random_vectors):
    from pipelines.vectorstore import StoreSettings

    monkeypatch.setattr(faiss_index, "FLAT_MAX", 50)
    monkeypatch.setattr(faiss_index, "IVF_MIN", 200)
    store = VectorStore(settings=StoreSettings(model="m", dimension=32))
    vectors = random_vectors(300)
    records = [{"document_id": i // 10, "text": str(i)} for i in range(300)]
    store.add(records[:40], vectors[:40])
    assert store.index_kind == "flat"
    store.add(records[40:100], vectors[40:100])
    assert store.index_kind == "hnsw"
    store.add(records[100:], vectors[100:])
    assert store.index_kind == "ivf" and store.count == 300
    store.remove_documents(range(4, 30))
    assert store.index_kind == "flat" and store.count == 40
    ((record, score),) = store.search_vectors(vectors[3], 1)[0]
    assert record["text"] == "3" and score == pytest.approx(1.0, abs=1e-4)


def test_search_folder_caches_and_times(corpus, embedder, tmp_path):
    _, documents = corpus
    sync_index(documents=documents, settings=BuildSettings(), out_dir=tmp_path / "v1", embedder=embedder)
    answer = search_folder(tmp_path / "v1", "password length", k=2)
    assert answer["hits"][0]["document"] == "security.txt" and len(answer["hits"]) == 2
    assert answer["model"] == "all-MiniLM-L6-v2" and answer["search_ms"] >= 0
    again = search_folder(tmp_path / "v1", "password length", k=2)
    assert again["hits"] == answer["hits"]


def test_missing_stored_file_is_a_document_error(tmp_path):
    from pipelines.vectorstore import load_parsed

    with pytest.raises(DocumentError, match="cannot be read"):
        load_parsed(SourceDocument(id=1, name="x.txt", sha256="", path=str(tmp_path / "nope.txt")))
