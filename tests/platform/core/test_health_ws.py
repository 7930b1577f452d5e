"""The /ws/health/ websocket: refused without login (close code 4401), live report with it."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from llmops.config.asgi import application

ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def session_cookie(transactional_db, client, user):
    """A real login through the login page; the socket presents its session cookie."""
    response = client.post("/accounts/login/", {"username": user.username, "password": user.raw_password})
    assert response.status_code == 302, response.content[:500]
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.mark.services
@pytest.mark.asyncio
async def test_refused_without_login(transactional_db):
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # accepted only to deliver the reason...
    message = await communicator.receive_output(timeout=10)
    assert message == {"type": "websocket.close", "code": 4401}  # ...then closed
    await communicator.wait()


@pytest.mark.services
@pytest.mark.asyncio
async def test_refused_with_a_forged_session(transactional_db):
    headers = [ORIGIN, (b"cookie", f"{settings.SESSION_COOKIE_NAME}=not-a-session".encode())]
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_output(timeout=10))["code"] == 4401


@pytest.mark.services
@pytest.mark.asyncio
async def test_accepted_with_login_and_sends_the_report(session_cookie):
    headers = [ORIGIN, (b"cookie", session_cookie.encode())]
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    report = await communicator.receive_json_from(timeout=20)
    assert report["type"] == "health"
    assert set(report["checks"]) == {"database", "broker", "channel_layer", "workers"}
    # The probe runs next to this consumer, which is itself listening on the channel layer.
    assert report["checks"]["broker"]["ok"] is True
    assert report["checks"]["channel_layer"] == {"ok": True, "ms": report["checks"]["channel_layer"]["ms"]}
    # Asking again gets a fresh report on demand.
    await communicator.send_to(text_data="refresh")
    again = await communicator.receive_json_from(timeout=20)
    assert again["type"] == "health"
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_cross_site_origin_is_rejected(session_cookie):
    headers = [(b"origin", b"https://evil.example"), (b"cookie", session_cookie.encode())]
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert not connected
