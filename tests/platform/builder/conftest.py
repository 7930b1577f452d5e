"""Fixtures for the builder's tests: API clients, a viewer, sample graphs."""

from __future__ import annotations

import copy
import json

import pytest

VALID_GRAPH = {
    "version": 1,
    "nodes": [
        {"id": "docs", "kind": "source.documents", "params": {"collection": 1}, "position": [0, 0]},
        {"id": "index", "kind": "vectorize.faiss", "params": {"chunk_size": 300}, "position": [300, 0]},
        {"id": "model", "kind": "source.model", "params": {"model": "demo"}, "position": [300, 200]},
        {"id": "rag", "kind": "serve.rag", "params": {}, "position": [600, 100]},
        {"id": "api", "kind": "publish.api", "params": {}, "position": [900, 100]},
    ],
    "edges": [
        {"from": ["docs", "documents"], "to": ["index", "documents"]},
        {"from": ["index", "index"], "to": ["rag", "index"]},
        {"from": ["model", "model"], "to": ["rag", "model"]},
        {"from": ["rag", "service"], "to": ["api", "service"]},
    ],
}


@pytest.fixture
def graph():
    return copy.deepcopy(VALID_GRAPH)


class Api:
    """A JSON client for /api/v1/ with a Bearer token."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def _send(self, method: str, path: str, body=None, raw: bytes | str | None = None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return getattr(self.client, method)(
            "/api/v1" + path, data=data, content_type="application/json", **self.headers
        )

    def get(self, path: str):
        return self.client.get("/api/v1" + path, **self.headers)

    def post(self, path: str, body=None, raw=None):
        return self._send("post", path, body, raw)

    def put(self, path: str, body=None, raw=None):
        return self._send("put", path, body, raw)

    def delete(self, path: str):
        return self.client.delete("/api/v1" + path, **self.headers)


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
def viewer(make_user, workspace):
    from llmops.accounts.models import Role
    from llmops.accounts.services import membership_set

    person = make_user("victor")
    membership_set(workspace=workspace, user=person, role=Role.VIEWER)
    return person


@pytest.fixture
def viewer_api(viewer):
    from django.test import Client

    return Api(Client(), _token(viewer))


@pytest.fixture
def pipeline(workspace, user, graph):
    from llmops.builder.services import pipeline_create

    return pipeline_create(workspace=workspace, user=user, name="Docs Q&A", graph=graph)
