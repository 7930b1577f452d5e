"""Live events over the websocket, from a real worker: replay after a disconnect."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def session_cookie(client, user) -> bytes:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _communicator(run_id: int, cookie: bytes, query: str):
    from channels.testing import WebsocketCommunicator

    from llmops.config.asgi import application

    return WebsocketCommunicator(
        application,
        f"/ws/runs/{run_id}/?{query}",
        headers=[(b"cookie", cookie), (b"origin", b"http://testserver")],
    )


async def _receive(run_id: int, cookie: bytes, *, after: int, count: int | None = None) -> list[dict]:
    """Events from a fresh connection: ``count`` of them, or up to the run's final event."""
    comm = _communicator(run_id, cookie, f"after={after}&format=json")
    connected, _ = await comm.connect(timeout=10)
    assert connected
    out: list[dict] = []
    try:
        while count is None or len(out) < count:
            event = await comm.receive_json_from(timeout=30)
            out.append(event)
            if event["type"] == "run" and event["status"] in ("succeeded", "failed", "cancelled"):
                break
    finally:
        await comm.disconnect()
    return out


@pytest.mark.asyncio
async def test_replay_after_disconnect_has_no_gap_and_no_duplicate(
    shared_worker, make_pipeline, user, session_cookie
):
    from llmops.runs.services import run_start

    pipeline = await sync_to_async(make_pipeline)(
        graph(
            [
                ("src", "test.source", {}),
                ("a", "test.step", {"steps": 20, "sleep_s": 1.5}),
                ("b", "test.step", {"steps": 10, "sleep_s": 0.5}),
            ],
            [("src", "a"), ("a", "b")],
        )
    )
    run = await sync_to_async(run_start)(user=user, pipeline=pipeline)
    first = await _receive(run.pk, session_cookie, after=0, count=12)
    await asyncio.sleep(0.6)  # events keep coming while nobody listens
    rest = await _receive(run.pk, session_cookie, after=first[-1]["seq"])
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1] == {**rest[-1], "type": "run", "status": "succeeded", "node": None}
    progress = [e for e in first + rest if e["type"] == "progress" and e["node"] == "a"]
    assert progress and all(0 <= e["progress"] <= 1 and "eta_s" in e for e in progress)
    # And the REST endpoint lists exactly what the socket sent.
    from llmops.runs.selectors import events_after

    stored = await sync_to_async(events_after)(run_id=run.pk, after=0)
    assert stored == first + rest
