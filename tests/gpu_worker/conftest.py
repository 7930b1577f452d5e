"""Fixtures for the run engine: test node kinds, fast engine timings, real workers, helpers.

Workers are real Celery subprocesses on the suite's broker and database. They learn the test
kinds from LLMOPS_EXTRA_NODE_MODULES and run with short heartbeat/reaper timings so a killed
worker is noticed in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gpu_worker import testkinds
from tests.gpu_worker.helpers import engine_env


@pytest.fixture(autouse=True, scope="module")
def _test_kinds():
    """The test kinds exist in this process for the module's tests, and are gone after."""
    testkinds.register_all()
    yield
    testkinds.unregister_all()


@pytest.fixture
def engine_worker(start_worker):
    """Factory: engine_worker(name="w1", concurrency=2) -> a ready worker on the cpu queue."""

    def factory(name: str = "w1", queues: str = "cpu", concurrency: int = 2, **env: str):
        return start_worker(queues, name=name, concurrency=concurrency, env=engine_env(**env))

    return factory


@pytest.fixture
def make_pipeline(transactional_db, user):
    """Factory: a saved pipeline of ``user`` with the given graph."""
    from llmops.builder.services import pipeline_create

    def factory(graph: dict, name: str = "p", owner=None):
        owner = owner or user
        workspace = owner.workspaces.first()
        return pipeline_create(workspace=workspace, user=owner, name=name, graph=graph)

    return factory


_shared: list = []  # the shared worker, once started


@pytest.fixture(scope="session")
def shared_worker(django_db_setup, django_db_blocker):
    """One worker (concurrency 2) on the cpu queue, shared by the engine tests: starting a
    worker costs seconds, and a test only needs one that runs whatever the database says.
    Tests that kill workers use the gpu queue and workers of their own. It is stopped as soon
    as the tests of this folder are done (pytest_runtest_teardown below): tests elsewhere
    expect queued tasks to stay queued."""
    from tests.conftest import Worker

    with django_db_blocker.unblock():
        # No reaper of its own: the worker-loss tests decide which recovery path they exercise.
        worker = Worker("cpu", "shared", concurrency=2, env=engine_env(LLMOPS_STALE_AFTER_S="600"))
        _shared.append(worker)
        try:
            worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
    yield worker
    worker.stop()


def pytest_runtest_teardown(item, nextitem):
    here = Path(__file__).parent
    if _shared and (nextitem is None or here not in Path(nextitem.path).parents):
        _shared.pop().stop()
