"""The run page updates live in Chromium: badges, progress bars, log lines and artifacts
arrive over the websocket from a real worker, with no reload.

Websockets need an ASGI server, so the page is served by daphne in a subprocess sharing the
test database and broker (pytest-django's live server speaks WSGI only).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.conftest import SHOTS, login
from tests.gpu_worker import testkinds
from tests.gpu_worker.helpers import engine_env
from tests.gpu_worker.testkinds import graph

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True, scope="module")
def _test_kinds():
    """The test kinds for this module only: other browser tests must not see them."""
    testkinds.register_all()
    yield
    testkinds.unregister_all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def asgi_server(transactional_db):
    from tests.conftest import ROOT

    port = _free_port()
    log = (ROOT / "var" / "test" / "logs").resolve()
    log.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "llmops.config.asgi:application",
        ],
        cwd=ROOT,
        env=engine_env(),
        stdout=(log / "e2e-daphne.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2).read()  # noqa: S310 - local test server
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((log / "e2e-daphne.log").read_text()[-3000:]) from None
            time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_run_page_updates_live(page, asgi_server, user, start_worker):
    from llmops.builder.services import pipeline_create
    from llmops.runs.services import run_start

    pipeline = pipeline_create(
        workspace=user.workspaces.first(),
        user=user,
        name="live",
        graph=graph(
            [("src", "test.source", {}), ("train", "test.step", {"steps": 12, "sleep_s": 3.0})],
            [("src", "train")],
        ),
    )
    run = run_start(user=user, pipeline=pipeline)  # no worker yet: everything waits, queued
    login(page, asgi_server, user.username, user.raw_password)
    page.goto(f"{asgi_server}/runs/{run.pk}/")
    badge = page.locator("#node-train-badge")
    assert badge.inner_text() == "Queued"
    page.evaluate("window.__notReloaded = true")

    start_worker("cpu", name="e2e", concurrency=1, env=engine_env())
    page.wait_for_function(
        "document.querySelector('#node-train-badge').textContent.trim() === 'Running'", timeout=30_000
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(
        "parseFloat(document.querySelector('#node-train-progress .progress > span').style.width) > 0",
        timeout=15_000,
    )
    assert "left" in page.locator("#node-train-progress .progress-text").inner_text()  # an ETA
    page.screenshot(path=str(SHOTS / "run-page-running.png"), full_page=True)
    page.wait_for_function(
        "document.querySelector('#run-status').textContent.trim() === 'Succeeded'", timeout=30_000
    )
    assert badge.inner_text() == "Succeeded"
    assert page.locator("#node-src-badge").inner_text() == "Succeeded"
    assert "wrote 5 characters" in page.locator("#run-log").inner_text()
    assert page.locator("#run-artifacts a", has_text="Download").count() == 2
    assert page.locator("#btn-cancel").count() == 0  # the head was re-rendered for a finished run
    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("Chart.getChart('run-chart').data.datasets.length") >= 1  # the loss curve
    assert not page.js_errors, page.js_errors
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-page.png"), full_page=True)


def test_builder_canvas_follows_a_run(page, asgi_server, user, start_worker):
    """Run from the builder: the canvas nodes go queued -> running -> succeeded, live.

    run-live.js is injected here until the builder template loads it (one <script> tag)."""
    from llmops.builder.services import pipeline_create

    start_worker("cpu", name="e2e-builder", concurrency=1, env=engine_env())
    pipeline = pipeline_create(
        workspace=user.workspaces.first(),
        user=user,
        name="canvas",
        graph=graph(
            [("src", "test.source", {}), ("train", "test.step", {"steps": 10, "sleep_s": 2.5})],
            [("src", "train")],
        ),
    )
    login(page, asgi_server, user.username, user.raw_password)
    page.goto(f"{asgi_server}/pipelines/{pipeline.pk}/")
    page.wait_for_function("window.LLMOpsBuilder && window.LLMOpsBuilder.pipelineId !== null")
    if not page.evaluate("!!window.LLMOpsRunLive"):
        page.add_script_tag(url=f"{asgi_server}/static/js/run-live.js")
    page.click("#btn-run")
    train = page.locator('.drawflow-node[data-node-id="train"]')
    page.wait_for_function(
        "document.querySelector('.drawflow-node[data-node-id=\"train\"]').classList.contains('state-running')",
        timeout=30_000,
    )
    page.wait_for_function(
        "(document.querySelector('.drawflow-node[data-node-id=\"train\"] .pct') || {}).textContent > '0%'",
        timeout=15_000,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "builder-running.png"))
    page.wait_for_function(
        "document.querySelector('.drawflow-node[data-node-id=\"train\"]').classList.contains('state-succeeded')",
        timeout=30_000,
    )
    assert "state-succeeded" in page.locator('.drawflow-node[data-node-id="src"]').get_attribute("class")
    assert "Done" in train.inner_text()
    assert not page.js_errors, page.js_errors
