"""The serving lane (endpoints/lane.py): the inference paths skip the site's middleware but keep
the host check and the security headers; every other path goes through the full stack."""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator

from llmops.endpoints.lane import PATHS

pytestmark = pytest.mark.django_db(transaction=True)


def _app():
    from llmops.config.asgi import application

    return application


async def _get(path: str, host: bytes = b"localhost", **headers: bytes):
    raw = [(b"host", host), *((k.encode(), v) for k, v in headers.items())]
    communicator = HttpCommunicator(_app(), "GET", path, headers=raw)
    response = await communicator.get_response(timeout=10)
    return response["status"], dict(response["headers"]), response["body"]


def test_only_the_inference_paths_take_the_lane():
    for path in (
        "/api/v1/endpoints/docs-qa/query",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/models/docs-qa",
    ):
        assert PATHS.match(path), path
    for path in ("/api/v1/endpoints/docs-qa", "/endpoints/docs-qa/playground/", "/v1/models/a/b", "/healthz"):
        assert not PATHS.match(path), path


@pytest.mark.asyncio
async def test_a_lane_request_is_answered_without_the_site_middleware():
    status, headers, body = await _get("/v1/models", authorization=b"Bearer llmk_not-a-key")
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert headers[b"X-Content-Type-Options"] == b"nosniff"  # SecurityMiddleware's headers, inline
    assert b"Set-Cookie" not in headers and b"X-Frame-Options" not in headers  # no session, no page


@pytest.mark.asyncio
async def test_the_lane_checks_the_host():
    status, _, _ = await _get("/v1/models", host=b"evil.example", authorization=b"Bearer llmk_x")
    assert status == 400


@pytest.mark.asyncio
async def test_other_paths_keep_the_full_stack():
    status, headers, _ = await _get("/accounts/login/")
    assert status == 200
    assert headers[b"X-Frame-Options"] == b"DENY" and b"Set-Cookie" in headers  # CSRF cookie
