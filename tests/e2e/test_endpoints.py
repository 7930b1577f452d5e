"""The endpoint page in Chromium against daphne and a real serve worker: ask in the playground,
see the streamed answer with its sources, rate it, create a key that the snippets then use."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import login
from tests.pipelines.serving import toys

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    from tests.platform.endpoints.conftest import stack_env, start_serve_worker, start_web

    root = tmp_path_factory.mktemp("e2e-endpoint")
    model = toys.build_model(root / "model")
    index = toys.build_index(root / "index")
    service = toys.build_service(root / "service", model=model, index=index, mode="extractive", top_k=2)
    env = stack_env(LLMOPS_SERVE_ACCEPT_TIMEOUT_S="20")
    with django_db_blocker.unblock():
        worker = start_serve_worker(env, name="serve-e2e")
    web, url = start_web(env)
    yield url, service
    web.stop()
    worker.stop()


def test_playground_answers_with_sources_and_feedback(page, stack, user):
    from llmops.endpoints import services
    from llmops.endpoints.models import EndpointKey, Feedback
    from tests.platform.endpoints.conftest import store_service, workspace_of

    url, folder = stack
    workspace = workspace_of(user)
    artifact = store_service(workspace=workspace, folder=folder, name="e2e")
    services.endpoint_publish_artifact(user=user, workspace=workspace, artifact=artifact, slug="e2e-docs")
    login(page, url, user.username, user.raw_password)
    page.goto(f"{url}/endpoints/e2e-docs/")
    assert f"{url}/api/v1/endpoints/e2e-docs/query" in page.inner_text("#use")

    page.fill("#ep-ask textarea", "How many days do I have to pay an invoice?")
    page.click("#ep-ask button")
    page.wait_for_selector(".ep-msg.answer .ep-rate", timeout=60_000)
    assert "30 days" in page.inner_text(".ep-msg.answer .ep-text")
    assert page.inner_text(".ep-msg.answer .ep-sources li .ep-doc").startswith("invoices.md")
    page.fill(".ep-rate input", "exactly right")
    page.click(".ep-rate button[title='Good answer']")
    page.wait_for_selector("text=Thanks, saved.")
    feedback = Feedback.objects.get(endpoint__slug="e2e-docs")
    assert (feedback.rating, feedback.comment, feedback.origin) == (1, "exactly right", "playground")
    assert feedback.sources[0]["document"] == "invoices.md"

    page.fill("#keys input[name=name]", "browser key")
    page.click("#keys button.primary")
    page.wait_for_selector("#fresh-secret")
    secret = page.inner_text("#fresh-secret").strip()
    assert EndpointKey.objects.get(name="browser key").prefix == secret[:11]
    assert f"export LLMOPS_KEY={secret}" in page.inner_text("#use")
    assert page.js_errors == []
