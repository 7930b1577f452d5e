"""Test helpers for every app (imported by tests only, like django.test).

from llmops.accounts.testing import assert_isolated

def test_pipeline_isolated(client, user, other_user, ...):
    pipeline = make_pipeline(workspace=other_user_workspace)
    client.force_login(user)
    assert_isolated(client, f"/pipelines/{pipeline.id}/", methods=("get", "post"),
                    hidden=[pipeline.name])
    assert_isolated(client, f"/api/v1/pipelines/{pipeline.id}", token=user_token,
                    methods=("get", "put", "delete"))
"""

from __future__ import annotations

from collections.abc import Iterable


def assert_isolated(
    client,
    *urls: str,
    methods: Iterable[str] = ("get",),
    token: str | None = None,
    hidden: Iterable[str] = (),
    data: dict | None = None,
) -> None:
    """Every URL answers 404 to this client, for every method, and its body shows no ``hidden`` text.

    Use it with URLs of another workspace's objects: such objects must look exactly like
    missing ones (404, never 403, which would confirm they exist). ``token`` sends the request
    as an API call with that Bearer token; POST/PUT/PATCH send ``data`` as JSON for API calls
    and as a form for pages.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures = []
    for url in urls:
        for method in methods:
            kwargs: dict = {"headers": headers}
            if method in ("post", "put", "patch"):
                kwargs["data"] = data or {}
                if token:
                    kwargs["content_type"] = "application/json"
            response = getattr(client, method)(url, **kwargs)
            body = response.content.decode(errors="replace")
            leaked = [text for text in hidden if text and text in body]
            if response.status_code != 404 or leaked:
                failures.append(
                    f"{method.upper()} {url} -> {response.status_code}"
                    + (f", body shows {leaked}" if leaked else "")
                )
    assert not failures, "not isolated (expected 404 and nothing shown):\n  " + "\n  ".join(failures)
