"""The Knowledge pages: empty state, create, collection page, form upload, partials, preview."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from llmops.knowledge import indexing
from llmops.knowledge.models import Chunk, Collection, Document
from tests.pipelines.docs import samples
from tests.platform.knowledge.conftest import CORPUS

pytestmark = pytest.mark.django_db


def test_empty_state_and_create(auth_client):
    page = auth_client.get("/knowledge/").content.decode()
    assert "No document collections yet" in page and "New collection" in page
    response = auth_client.post("/knowledge/new/", {"name": "Policies", "description": "HR"})
    collection = Collection.objects.get(name="Policies")
    assert response.status_code == 302 and response["Location"] == f"/knowledge/{collection.pk}/"
    page = auth_client.get("/knowledge/").content.decode()
    assert "Policies" in page and "No document collections yet" not in page
    bad = auth_client.post("/knowledge/new/", {"name": ""})
    assert bad.status_code == 400 and "This field is required" in bad.content.decode()


def test_collection_page_has_drop_zone_picker_and_documents(auth_client, make_collection, add_documents):
    collection = make_collection()
    add_documents(
        collection, {"guide.md": samples.MARKDOWN.encode(), "locked.pdf": samples.make_encrypted_pdf(["x"])}
    )
    page = auth_client.get(f"/knowledge/{collection.pk}/").content.decode()
    assert 'id="dropzone"' in page and 'type="file"' in page and "webkitdirectory" in page
    assert f'data-api="/api/v1/collections/{collection.pk}/documents"' in page
    assert "guide.md" in page and "locked.pdf" in page
    assert "protected by a password" in page  # the failed document shows its reason
    assert "js/knowledge.js" in page and "css/knowledge.css" in page
    assert "No search index yet" in page and "Build index" in page


def test_status_partial_and_full_page(auth_client, make_collection, add_documents):
    collection = make_collection()
    add_documents(collection, {"guide.md": samples.MARKDOWN.encode()})
    partial = auth_client.get(
        f"/knowledge/{collection.pk}/status/", headers={"HX-Request": "true"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="live"') and "<html" not in partial and "guide.md" in partial
    full = auth_client.get(f"/knowledge/{collection.pk}/status/").content.decode()
    assert "<html" in full and "guide.md" in full


def test_form_upload_without_javascript(auth_client, make_collection):
    collection = make_collection()
    response = auth_client.post(
        f"/knowledge/{collection.pk}/upload/",
        {"files": [SimpleUploadedFile("a.md", b"# A\n\nalpha"), SimpleUploadedFile("empty.txt", b"")]},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "a.md" in page and "The file is empty (0 bytes)." in page
    assert Document.objects.filter(collection=collection).count() == 1


def test_document_preview_shows_text_and_the_matched_passage(
    auth_client, user, make_collection, add_documents, build_index
):
    collection = make_collection()
    add_documents(collection, CORPUS)
    index = indexing.index_create(user=user, collection=collection, chunk_size=64, chunk_overlap=8)
    build_index(index)
    chunk = Chunk.objects.filter(
        index=index, document__name="handbook.docx", text__contains="annual leave"
    ).first()
    url = f"/knowledge/documents/{chunk.document_id}/?index={index.pk}&chunk={chunk.vector_id}"
    page = auth_client.get(url).content.decode()
    assert '<mark id="hit" class="hit-passage">' in page
    assert "twenty five days of annual leave" in page
    page = auth_client.get(f"/knowledge/{collection.pk}/").content.decode()
    assert "Search playground" in page and 'name="query"' in page and "Ready" in page


def test_search_form_without_an_index_explains(auth_client, make_collection):
    collection = make_collection()
    response = auth_client.post(f"/knowledge/{collection.pk}/search/", {"query": "anything"})
    assert response.status_code == 409 and "Create a search index first" in response.content.decode()
    # htmx swaps only 2xx answers: the partial carries the explanation with a 200
    response = auth_client.post(
        f"/knowledge/{collection.pk}/search/", {"query": "anything"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and "Create a search index first" in response.content.decode()
    assert "<html" not in response.content.decode()


def test_delete_document_from_the_list(auth_client, make_collection, add_documents):
    collection = make_collection()
    add_documents(collection, {"a.md": b"# A\n\nalpha"})
    document = Document.objects.get()
    response = auth_client.post(f"/knowledge/documents/{document.pk}/delete/", headers={"HX-Request": "true"})
    assert response.status_code == 200 and response["HX-Trigger"] == "knowledge-changed"
    assert not Document.objects.exists()


def test_download_original_is_an_attachment(auth_client, make_collection, add_documents):
    collection = make_collection()
    add_documents(collection, {"page.html": samples.HTML.encode()})
    document = Document.objects.get()
    response = auth_client.get(f"/knowledge/documents/{document.pk}/download/")
    assert response["Content-Disposition"].startswith('attachment; filename="page.html"')
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == samples.HTML.encode()
