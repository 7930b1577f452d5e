"""Fixtures for the runs app: the test node kinds (no worker; tasks wait in the broker)."""

from __future__ import annotations

import pytest

from tests.gpu_worker import testkinds


@pytest.fixture(autouse=True, scope="module")
def _test_kinds():
    testkinds.register_all()
    yield
    testkinds.unregister_all()


@pytest.fixture
def chain_pipeline(db, user):
    from llmops.builder.services import pipeline_create

    return pipeline_create(
        workspace=user.workspaces.first(),
        user=user,
        name="chain",
        graph=testkinds.graph([("src", "test.source", {}), ("a", "test.step", {})], [("src", "a")]),
    )
