"""Uploading through the API: one answer per file, safe storage, limits, duplicates."""

from __future__ import annotations

import pytest

from llmops.knowledge.models import Document
from tests.pipelines.docs import samples

pytestmark = pytest.mark.django_db


def _collection(api, name="Docs"):
    response = api.post("/collections", {"name": name})
    assert response.status_code == 201, response.content
    return response.json()


def test_a_mixed_batch_gets_one_answer_per_file(api, media_root):
    collection = _collection(api)
    files = {
        "two-pages.pdf": samples.make_pdf(["First page about invoices.", "Second page about refunds."]),
        "handbook.docx": samples.make_docx([("Leave", ["25 days."])]),
        "guide.md": samples.MARKDOWN.encode(),
        "faq.html": samples.HTML.encode(),
        "broken.pdf": samples.make_corrupt_pdf(),
        "locked.pdf": samples.make_encrypted_pdf(["secret"]),
        "empty.txt": b"",
        "really-text.pdf": b"This file says it is a PDF but it is words.",
        "latin1.txt": "Résumé du café".encode("latin-1"),
        "photo.png": b"\x89PNG\r\n\x1a\n" + bytes(200),
    }
    response = api.upload(f"/collections/{collection['id']}/documents", files)
    assert response.status_code == 200, response.content
    body = response.json()
    answers = {r["name"]: r for r in body["results"]}
    assert [r["name"] for r in body["results"]] == list(files)
    for name in ("two-pages.pdf", "handbook.docx", "guide.md", "faq.html", "really-text.pdf"):
        assert answers[name]["status"] == "created", answers[name]
    assert answers["two-pages.pdf"]["document"]["pages"] == 2
    assert answers["really-text.pdf"]["document"]["kind"] == "text"
    assert "plain text" in answers["really-text.pdf"]["note"]
    assert "damaged" in answers["broken.pdf"]["reason"]
    assert "password" in answers["locked.pdf"]["reason"]
    assert answers["empty.txt"]["reason"] == "The file is empty (0 bytes)."
    assert "not UTF-8" in answers["latin1.txt"]["reason"]
    assert "PNG image" in answers["photo.png"]["reason"]
    # damaged/locked documents are kept, failed with their reason, so they can be replaced
    assert answers["broken.pdf"]["document"]["state"] == "failed"
    assert answers["empty.txt"]["document"] is None and answers["photo.png"]["document"] is None
    assert (body["created"], body["duplicate"], body["error"]) == (5, 0, 5)

    listed = api.get(f"/collections/{collection['id']}/documents").json()["items"]
    states = {d["name"]: d["state"] for d in listed}
    assert states == {
        "two-pages.pdf": "parsed",
        "handbook.docx": "parsed",
        "guide.md": "parsed",
        "faq.html": "parsed",
        "really-text.pdf": "parsed",
        "broken.pdf": "failed",
        "locked.pdf": "failed",
    }
    detail = api.get(f"/collections/{collection['id']}").json()
    assert detail["states"] == {"uploaded": 0, "parsed": 5, "indexed": 0, "failed": 2}


def test_files_are_stored_under_uuid_names_inside_the_media_folder(api, media_root):
    collection = _collection(api)
    response = api.upload(
        f"/collections/{collection['id']}/documents",
        {"../../../../tmp/evil.txt": b"escape attempt", "notes.md": b"# Notes\n\nhello"},
    )
    results = response.json()["results"]
    assert results[0]["name"] == "evil.txt" and results[0]["status"] == "created"
    document = Document.objects.get(pk=results[0]["document"]["id"])
    assert document.storage_name.endswith(".txt") and len(document.storage_name) == 36
    stored = sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
    assert len(stored) == 4  # two originals + two extracted texts
    assert all(p.startswith(f"knowledge/ws{document.workspace_id}/c{collection['id']}/") for p in stored)
    assert not any("evil" in p for p in stored)


def test_duplicates_are_found_by_content(api):
    collection = _collection(api)
    path = f"/collections/{collection['id']}/documents"
    first = api.upload(path, {"a.md": b"# Same\n\ncontent", "b.md": b"# Same\n\ncontent"}).json()["results"]
    assert [r["status"] for r in first] == ["created", "duplicate"]
    assert first[1]["document"]["id"] == first[0]["document"]["id"]
    assert "a.md" in first[1]["reason"]
    again = api.upload(path, {"renamed.md": b"# Same\n\ncontent"}).json()["results"][0]
    assert again["status"] == "duplicate"
    # another collection may hold the same file
    other = _collection(api, "Other")
    assert (
        api.upload(f"/collections/{other['id']}/documents", {"a.md": b"# Same\n\ncontent"}).json()["results"][
            0
        ]["status"]
        == "created"
    )


def test_per_file_limit_refuses_only_that_file(api, settings):
    settings.LLMOPS_MAX_UPLOAD_MB = 1
    collection = _collection(api)
    big = b"word " * 250_000  # 1.25 MB
    results = api.upload(
        f"/collections/{collection['id']}/documents", {"big.txt": big, "small.txt": b"small and fine"}
    ).json()["results"]
    assert results[0]["status"] == "error" and "1 MB limit per file" in results[0]["reason"]
    assert results[1]["status"] == "created"


def test_per_request_limit_is_a_413(api, settings):
    settings.LLMOPS_MAX_REQUEST_MB = 1
    collection = _collection(api)
    response = api.upload(
        f"/collections/{collection['id']}/documents", {"a.txt": b"a" * 700_000, "b.txt": b"b" * 700_000}
    )
    assert response.status_code == 413
    assert "1 MB limit per request" in response.json()["detail"]
    assert not Document.objects.exists()


def test_no_files_is_a_400(api):
    collection = _collection(api)
    response = api.client.post(f"/api/v1/collections/{collection['id']}/documents", data={}, **api.headers)
    assert response.status_code == 400 and "files" in response.json()["detail"]


def test_text_of_a_document_and_delete(api, media_root, django_capture_on_commit_callbacks):
    collection = _collection(api)
    created = api.upload(
        f"/collections/{collection['id']}/documents", {"faq.html": samples.HTML.encode()}
    ).json()["results"][0]["document"]
    detail = api.get(f"/documents/{created['id']}?text=true").json()
    assert "last working day" in detail["text"] and "secretToken" not in detail["text"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/documents/{created['id']}").status_code == 204
    assert api.get(f"/documents/{created['id']}").status_code == 404
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_replace_keeps_the_document_and_reparses(api):
    collection = _collection(api)
    created = api.upload(
        f"/collections/{collection['id']}/documents", {"policy.pdf": samples.make_encrypted_pdf(["x"])}
    ).json()["results"][0]["document"]
    assert created["state"] == "failed"
    response = api.upload(
        f"/documents/{created['id']}/replace",
        {"policy.pdf": samples.make_pdf(["Now readable."])},
        field="file",
    )
    answer = response.json()
    assert answer["status"] == "created" and answer["document"]["id"] == created["id"]
    assert answer["document"]["state"] == "parsed" and answer["document"]["error"] == ""


def test_collections_api(api, other_api):
    assert api.get("/collections").json() == {"items": []}
    created = _collection(api, "HR")
    assert created["documents"] == 0 and created["indexes"] == []
    assert [c["name"] for c in api.get("/collections").json()["items"]] == ["HR"]
    assert api.post("/collections", {"name": ""}).status_code == 422
    assert api.post("/collections", {"name": "x", "nope": 1}).status_code == 422
    assert other_api.get("/collections").json() == {"items": []}
    assert api.delete(f"/collections/{created['id']}").status_code == 204
    assert api.get("/collections").json() == {"items": []}


def test_viewers_may_read_but_not_upload(api, user, other_user, make_collection):
    from django.test import Client

    from llmops.accounts.services import api_token_create, membership_set
    from tests.platform.knowledge.conftest import Api

    collection = make_collection()
    membership_set(workspace=collection.workspace, user=other_user, role="viewer")
    viewer = Api(Client(), api_token_create(user=other_user, name="t")[1])
    assert viewer.get(f"/collections/{collection.pk}").status_code == 200
    response = viewer.upload(f"/collections/{collection.pk}/documents", {"a.txt": b"hi"})
    assert response.status_code == 403
    assert viewer.post(f"/collections/{collection.pk}/indexes", {}).status_code == 403
