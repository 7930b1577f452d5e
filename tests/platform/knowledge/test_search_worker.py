"""The whole path with a real Celery worker on the gpu and serve queues: upload by API, the
index builds on the worker, the search API asks the serve worker, deletion takes effect."""

from __future__ import annotations

import time

import pytest

from tests.conftest import worker_env
from tests.platform.knowledge.conftest import CORPUS

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _wait(predicate, timeout: float = 180, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_upload_index_search_and_delete_through_a_worker(api, start_worker, media_root, settings):
    settings.LLMOPS_SEARCH_TIMEOUT_S = 90  # the first query may wait for the model to load
    start_worker(
        "gpu,serve", name="knowledge", env=worker_env(LLMOPS_MEDIA_ROOT=str(media_root), HF_HUB_OFFLINE="1")
    )
    collection = api.post("/collections", {"name": "Company"}).json()
    results = api.upload(f"/collections/{collection['id']}/documents", CORPUS).json()["results"]
    assert [r["status"] for r in results] == ["created"] * 4
    index = api.post(
        f"/collections/{collection['id']}/indexes", {"chunk_size": 128, "chunk_overlap": 16}
    ).json()

    def ready(version=1):
        state = api.get(f"/indexes/{index['id']}").json()
        assert state["status"] != "failed", state
        return state if state["status"] == "ready" and state["version"] >= version else None

    built = _wait(ready, what="the index to build")
    assert built["vectors"] > 4 and built["dimension"] == 384
    states = {
        d["name"]: d["state"] for d in api.get(f"/collections/{collection['id']}/documents").json()["items"]
    }
    assert set(states.values()) == {"indexed"}

    answer = api.post(
        f"/indexes/{index['id']}/search", {"query": "how many days of annual leave do I get", "k": 3}
    )
    assert answer.status_code == 200, answer.content
    hits = answer.json()["hits"]
    assert hits[0]["document"]["name"] == "handbook.docx"
    assert "twenty five days" in hits[0]["text"] and isinstance(hits[0]["score"], float)
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert {"annual", "leave"} <= {hits[0]["text"][a:b] for a, b in hits[0]["matches"]}
    top = api.post(f"/indexes/{index['id']}/search", {"query": "when are salaries paid", "k": 1}).json()[
        "hits"
    ]
    assert top[0]["document"]["name"] == "payroll.html"

    # the index follows the collection: a new upload becomes searchable without any action
    api.upload(
        f"/collections/{collection['id']}/documents",
        {"travel.txt": b"Travel policy\n\nEmployees take the train for trips under four hours."},
    )
    _wait(lambda: ready(version=2), what="the new document to be indexed")
    top = api.post(
        f"/indexes/{index['id']}/search", {"query": "train or plane for short trips", "k": 1}
    ).json()
    assert top["hits"][0]["document"]["name"] == "travel.txt"

    # deleting a document: its passages are never returned again
    payroll = next(
        d
        for d in api.get(f"/collections/{collection['id']}/documents").json()["items"]
        if d["name"] == "payroll.html"
    )
    assert api.delete(f"/documents/{payroll['id']}").status_code == 204
    names = [
        h["document"]["name"]
        for h in api.post(
            f"/indexes/{index['id']}/search", {"query": "when are salaries paid", "k": 10}
        ).json()["hits"]
    ]
    assert "payroll.html" not in names
    after = _wait(lambda: ready(version=3), what="the deleted document's vectors to be removed")
    assert after["vectors"] < _wait(ready)["vectors"] + 1
    assert "-1 removed" in after["message"]
