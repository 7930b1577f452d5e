"""Another workspace's collections, documents and indexes do not exist for you: 404 everywhere."""

from __future__ import annotations

import pytest

from llmops.accounts.testing import assert_isolated
from llmops.knowledge import indexing
from llmops.knowledge.models import Document, VectorIndex

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign(other_user, make_collection, add_documents):
    """Mallory's collection with a document and an index."""
    collection = make_collection("Mallory secret plans", owner=other_user)
    add_documents(collection, {"plans.md": b"# Plans\n\nTop secret."}, owner=other_user)
    index = indexing.index_create(user=other_user, collection=collection, name="Mallory index")
    return collection, Document.objects.get(collection=collection), index


def test_pages_answer_404(client, user, foreign):
    collection, document, index = foreign
    client.force_login(user)
    hidden = ["Mallory secret plans", "plans.md", "Mallory index"]
    assert_isolated(
        client,
        f"/knowledge/{collection.pk}/",
        f"/knowledge/{collection.pk}/status/",
        f"/knowledge/documents/{document.pk}/",
        f"/knowledge/documents/{document.pk}/download/",
        hidden=hidden,
    )
    assert_isolated(
        client,
        f"/knowledge/{collection.pk}/upload/",
        f"/knowledge/{collection.pk}/search/",
        f"/knowledge/{collection.pk}/delete/",
        f"/knowledge/{collection.pk}/indexes/new/",
        f"/knowledge/indexes/{index.pk}/sync/",
        f"/knowledge/indexes/{index.pk}/delete/",
        f"/knowledge/documents/{document.pk}/delete/",
        f"/knowledge/documents/{document.pk}/replace/",
        methods=("post",),
        data={"query": "plans"},
        hidden=hidden,
    )
    response = client.get("/knowledge/")
    assert "Mallory" not in response.content.decode()
    assert (
        Document.objects.filter(pk=document.pk).exists() and VectorIndex.objects.filter(pk=index.pk).exists()
    )


def test_api_answers_404(client, user, api_token, foreign):
    collection, document, index = foreign
    hidden = ["Mallory secret plans", "plans.md"]
    assert_isolated(
        client,
        f"/api/v1/collections/{collection.pk}",
        f"/api/v1/collections/{collection.pk}/documents",
        f"/api/v1/documents/{document.pk}",
        f"/api/v1/indexes/{index.pk}",
        token=api_token,
        hidden=hidden,
    )
    assert_isolated(
        client,
        f"/api/v1/collections/{collection.pk}",
        f"/api/v1/documents/{document.pk}",
        f"/api/v1/indexes/{index.pk}",
        methods=("delete",),
        token=api_token,
    )
    assert_isolated(
        client,
        f"/api/v1/indexes/{index.pk}/search",
        f"/api/v1/collections/{collection.pk}/indexes",
        f"/api/v1/indexes/{index.pk}/sync",
        methods=("post",),
        token=api_token,
        data={"query": "plans", "k": 3},
    )
    assert_isolated(
        client,
        f"/api/v1/indexes/{index.pk}",
        methods=("patch",),
        token=api_token,
        data={"follow_collection": False},
    )
    headers = {"Authorization": f"Bearer {api_token}"}
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = client.post(
        f"/api/v1/collections/{collection.pk}/documents",
        data={"files": [SimpleUploadedFile("x.txt", b"intrusion")]},
        headers=headers,
    )
    assert upload.status_code == 404
    assert Document.objects.filter(collection=collection).count() == 1
    listed = client.get("/api/v1/collections", headers=headers).json()["items"]
    assert listed == []
    assert client.get("/api/v1/indexes", headers=headers).json()["items"] == []


def test_resources_refuse_another_workspace(user, foreign):
    from llmops.knowledge.resources import collection_resource, vector_index_resource
    from pipelines.context import NodeFailure

    collection, _, index = foreign
    mine = user.workspaces.get().pk
    with pytest.raises(NodeFailure):
        collection_resource(workspace_id=mine, ref=collection.pk)
    with pytest.raises(NodeFailure):
        vector_index_resource(workspace_id=mine, ref=index.pk)
