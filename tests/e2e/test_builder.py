"""The builder in a real browser: drag nodes in, wire them, set a parameter, save, reload."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import SHOTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-e2e-123456!"


@pytest.fixture
def pipeline_page(page, live_server):
    from llmops.accounts.services import user_create
    from llmops.builder.services import pipeline_create

    user = user_create(username="eve", password=PASSWORD)
    pipeline = pipeline_create(workspace=user.workspaces.get(), user=user, name="Docs to answers")
    login(page, live_server.url, "eve", PASSWORD)
    page.goto(f"{live_server.url}/pipelines/{pipeline.pk}/")
    page.wait_for_function("window.LLMOpsBuilder && window.LLMOpsBuilder.pipelineId")
    return page, pipeline


def drag_from_palette(page, kind: str, x: float, y: float) -> None:
    page.locator(f'.palette-item[data-kind="{kind}"]').drag_to(
        page.locator("#canvas-wrap"), target_position={"x": x, "y": y})


def node(page, node_id: str):
    return page.locator(f'.drawflow-node[data-node-id="{node_id}"]')


def connect(page, out_node: str, out_port: str, in_node: str, in_port: str) -> None:
    """Press on an output dot, move to an input dot and release, as a person would."""
    a = node(page, out_node).locator(f'.output[data-port="{out_port}"]').bounding_box()
    b = node(page, in_node).locator(f'.input[data-port="{in_port}"]').bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    page.mouse.up()


def edges(graph: dict) -> set[tuple]:
    return {(tuple(e["from"]), tuple(e["to"])) for e in graph["edges"]}


def test_build_save_reload(pipeline_page, live_server):
    page, pipeline = pipeline_page
    assert page.locator("#canvas-hint").is_visible()  # the empty canvas says what to do

    drag_from_palette(page, "source.documents", 60, 80)
    drag_from_palette(page, "vectorize.faiss", 330, 80)
    drag_from_palette(page, "serve.rag", 600, 220)
    for node_id in ("docs", "index", "rag"):
        node(page, node_id).wait_for()
    assert page.locator("#canvas-hint").is_hidden()
    assert page.locator("#dirty-indicator").is_visible()

    connect(page, "docs", "documents", "index", "documents")
    connect(page, "index", "index", "rag", "index")
    assert page.locator("svg.connection").count() == 2

    # A wrong wire is refused at once, with the reason.
    connect(page, "docs", "documents", "rag", "model")
    toast = page.locator("#toast")
    toast.wait_for(state="visible")
    assert "A Documents output cannot feed a Model input" in toast.inner_text()
    assert page.locator("svg.connection").count() == 2

    # Select the index node: its form is rendered on the server; change a parameter.
    node(page, "index").click(position={"x": 100, "y": 16})
    field = page.locator("#node-form input[name=f_chunk_size]")
    field.wait_for()
    assert page.locator("#inspector-label").inner_text() == "Search index"
    field.fill("300")
    field.press("Tab")
    page.locator("#node-form .form-status .ok").wait_for()
    page.wait_for_function(
        "window.LLMOpsBuilder.getGraph().nodes.find(n => n.id === 'index').params.chunk_size === 300")

    # An out-of-range value is reported inline, next to the field.
    field = page.locator("#node-form input[name=f_chunk_overlap]")
    field.fill("-5")
    field.press("Tab")
    page.locator('#node-form .field[data-field="chunk_overlap"] .field-error').wait_for()

    field = page.locator("#node-form input[name=f_chunk_overlap]")
    field.fill("40")
    field.press("Tab")
    page.locator("#node-form .form-status .ok").wait_for()

    page.keyboard.press("Control+s")
    page.locator("#status-line", has_text="Saved as version 2").wait_for()
    assert page.locator("#dirty-indicator").is_hidden()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "builder-saved.png"))
    saved = page.evaluate("window.LLMOpsBuilder.getGraph()")

    page.reload()
    page.wait_for_function("window.LLMOpsBuilder && window.LLMOpsBuilder.pipelineId")
    node(page, "rag").wait_for()
    reloaded = page.evaluate("window.LLMOpsBuilder.getGraph()")
    assert {n["id"]: (n["kind"], n["params"]) for n in reloaded["nodes"]} == \
        {n["id"]: (n["kind"], n["params"]) for n in saved["nodes"]}
    assert edges(reloaded) == edges(saved) == {
        (("docs", "documents"), ("index", "documents")), (("index", "index"), ("rag", "index"))}
    assert page.locator("svg.connection").count() == 2

    # The same graph comes back from the REST API.
    response = page.request.get(f"{live_server.url}/api/v1/pipelines/{pipeline.pk}")
    assert response.status == 200
    api = response.json()
    assert api["version"] == 2
    index = next(n for n in api["graph"]["nodes"] if n["id"] == "index")
    assert index["kind"] == "vectorize.faiss"
    assert index["params"]["chunk_size"] == 300 and index["params"]["chunk_overlap"] == 40
    assert edges(api["graph"]) == edges(saved)
    assert page.js_errors == []


def test_delete_key_and_validation_on_nodes(pipeline_page):
    page, _ = pipeline_page
    drag_from_palette(page, "source.model", 60, 80)
    drag_from_palette(page, "publish.api", 400, 80)
    node(page, "api").wait_for()

    # Validation marks the unconnected Publish API input on the node itself.
    page.locator("#btn-validate").click()
    node(page, "api").locator(".node-issues .issue.error").first.wait_for()
    assert "has-error" in (node(page, "api").get_attribute("class") or "")
    page.locator("#problems-list li.problem").first.wait_for()
    assert page.locator("#problems-toggle").inner_text().endswith(("problem", "problems"))

    # Clicking a problem selects its node; the Delete key removes it.
    page.locator("#problems-list li.problem", has_text="api").first.click()
    page.locator("#inspector-label", has_text="Publish API").wait_for()
    page.locator("#canvas-wrap").hover()
    page.keyboard.press("Delete")
    node(page, "api").wait_for(state="detached")
    graph = page.evaluate("window.LLMOpsBuilder.getGraph()")
    assert [n["id"] for n in graph["nodes"]] == ["model"]

    # The run-state API of EVENTS.md draws a badge and a progress bar on the node.
    page.evaluate("""window.LLMOpsBuilder.setNodeState('model',
        {status: 'running', progress: 0.42, message: 'Loading weights', eta_s: 12})""")
    state = node(page, "model").locator(".node-state")
    assert "Running" in state.inner_text() and "42%" in state.inner_text()
    assert "Loading weights" in state.inner_text()
    page.evaluate("window.LLMOpsBuilder.clearNodeStates()")
    assert state.is_hidden()
    assert json.dumps(page.js_errors) == "[]"
