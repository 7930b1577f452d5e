"""Fixtures for knowledge: a private media folder, API clients, collections, documents, and
index building in this process (the worker task body, called as a function)."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.pipelines.docs import samples

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


class Api:
    """/api/v1 with a Bearer token; ``upload`` sends multipart files."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, path: str):
        return self.client.get("/api/v1" + path, **self.headers)

    def post(self, path: str, body=None):
        import json

        return self.client.post(
            "/api/v1" + path, data=json.dumps(body or {}), content_type="application/json", **self.headers
        )

    def patch(self, path: str, body=None):
        import json

        return self.client.patch(
            "/api/v1" + path, data=json.dumps(body or {}), content_type="application/json", **self.headers
        )

    def delete(self, path: str):
        return self.client.delete("/api/v1" + path, **self.headers)

    def upload(self, path: str, files: dict[str, bytes], field: str = "files"):
        uploads = [SimpleUploadedFile(name, data) for name, data in files.items()]
        return self.client.post("/api/v1" + path, data={field: uploads}, **self.headers)


def _token(user) -> str:
    from llmops.accounts.services import api_token_create

    return api_token_create(user=user, name="test")[1]


@pytest.fixture
def api(client, user):
    return Api(client, _token(user))


@pytest.fixture
def other_api(user, other_user):
    from django.test import Client

    return Api(Client(), _token(other_user))


@pytest.fixture
def workspace(user):
    return user.workspaces.get()


@pytest.fixture
def make_collection(user):
    from llmops.knowledge.services import collection_create

    def factory(name: str = "Handbook", owner=None):
        owner = owner or user
        return collection_create(user=owner, workspace=owner.workspaces.get(), name=name)

    return factory


@pytest.fixture
def add_documents(user):
    """add_documents(collection, {"name": bytes, ...}) -> [UploadResult] through the service."""
    from llmops.knowledge.services import documents_upload

    def factory(collection, files: dict[str, bytes], owner=None):
        uploads = [SimpleUploadedFile(name, data) for name, data in files.items()]
        return documents_upload(user=owner or user, collection=collection, uploads=uploads)

    return factory


@pytest.fixture
def build_index():
    """Run the worker's sync task body here, synchronously (what a gpu worker would do)."""

    def run(index, add_new=None):
        from gpu_worker.knowledge_tasks import sync_index

        result = sync_index.run(index.pk, add_new)
        index.refresh_from_db()
        return result

    return run


CORPUS = {
    "garden.md": samples.MARKDOWN.encode(),
    "payroll.html": samples.HTML.encode(),
    "refunds.pdf": samples.make_pdf(["Refund policy", "Refunds are paid back within ten business days."]),
    "handbook.docx": samples.make_docx(
        [
            ("Holidays", ["Everyone gets twenty five days of annual leave."]),
            ("Expenses", ["Submit receipts before the end of the month."]),
        ]
    ),
}
