"""The run websocket without a worker: access control, gap filling, the htmx format."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _cookie(client, user) -> bytes:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _communicator(run_id: int, query: str = "after=0&format=json", cookie: bytes | None = None):
    from channels.testing import WebsocketCommunicator

    from llmops.config.asgi import application

    headers = [(b"origin", b"http://testserver")] + ([(b"cookie", cookie)] if cookie else [])
    return WebsocketCommunicator(application, f"/ws/runs/{run_id}/?{query}", headers=headers)


@pytest.fixture
def run(chain_pipeline, user):
    from llmops.runs.services import run_start

    return run_start(user=user, pipeline=chain_pipeline)


async def _closed_with(comm) -> int:
    connected, _ = await comm.connect(timeout=10)
    assert connected  # accepted, then closed with a code the browser can read
    message = await comm.receive_output(timeout=10)
    assert message["type"] == "websocket.close"
    return message["code"]


@pytest.mark.asyncio
async def test_another_workspace_is_refused(run, client, other_user):
    cookie = await sync_to_async(_cookie)(client, other_user)
    assert await _closed_with(_communicator(run.pk, cookie=cookie)) == 4403


@pytest.mark.asyncio
async def test_anonymous_is_refused(run):
    assert await _closed_with(_communicator(run.pk)) == 4401


@pytest.mark.asyncio
async def test_replays_stored_events_then_fills_a_gap_from_the_database(run, client, user):
    from llmops.runs.events import emit, group_name
    from llmops.runs.models import PipelineRun, RunEvent

    cookie = await sync_to_async(_cookie)(client, user)
    stored = await sync_to_async(lambda: RunEvent.objects.filter(run=run).count())()
    comm = _communicator(run.pk, "after=2&format=json", cookie)
    assert (await comm.connect(timeout=10))[0]
    replayed = [await comm.receive_json_from(timeout=10) for _ in range(stored - 2)]
    assert [e["seq"] for e in replayed] == list(range(3, stored + 1))

    # Event N+1 is stored but its publish is lost (or still on its way); N+2 arrives live.
    def store_without_publish():
        from django.utils import timezone

        seq = stored + 1
        PipelineRun.objects.filter(pk=run.pk).update(last_seq=seq)
        RunEvent.objects.create(
            run=run,
            seq=seq,
            type="log",
            node_id="src",
            payload={"message": "quiet"},
            created_at=timezone.now(),
        )

    await sync_to_async(store_without_publish)()
    await sync_to_async(emit)(run_id=run.pk, type="log", node_id="src", message="loud")
    got = [await comm.receive_json_from(timeout=10) for _ in range(2)]
    assert [(e["seq"], e["message"]) for e in got] == [(stored + 1, "quiet"), (stored + 2, "loud")]

    # A duplicate or stale publish is dropped.
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(group_name(run.pk), {"type": "run.events", "events": [got[0]]})
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


@pytest.mark.asyncio
async def test_html_format_sends_out_of_band_fragments(run, client, user):
    from llmops.runs.events import emit

    cookie = await sync_to_async(_cookie)(client, user)
    last = run.last_seq
    comm = _communicator(run.pk, f"after={last}&format=html", cookie)
    assert (await comm.connect(timeout=10))[0]
    await sync_to_async(emit)(
        run_id=run.pk,
        type="progress",
        node_id="a",
        status="running",
        progress=0.42,
        message="Embedded 42/100 chunks",
        eta_s=12.0,
        metrics={"loss": 1.5, "step": 3},
    )
    html = await comm.receive_from(timeout=10)
    assert 'id="run-last-event" hx-swap-oob="true"' in html and f'data-seq="{last + 1}"' in html
    assert 'id="node-a-progress" hx-swap-oob="true"' in html
    assert "42%" in html and "Embedded 42/100 chunks" in html and "about 12 s left" in html
    await sync_to_async(emit)(
        run_id=run.pk, type="log", node_id="a", level="warning", message="<b>careful</b>"
    )
    html = await comm.receive_from(timeout=10)
    assert 'id="run-log" hx-swap-oob="beforeend"' in html and "&lt;b&gt;careful&lt;/b&gt;" in html
    await sync_to_async(emit)(run_id=run.pk, type="started", node_id="src", status="running")
    html = await comm.receive_from(timeout=10)
    assert 'id="node-src" role="listitem"' in html and 'hx-swap-oob="true"' in html
    await comm.disconnect()
