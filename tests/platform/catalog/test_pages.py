"""The Models page and a dataset's page: forms, htmx partials, row errors, isolation."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from llmops.accounts.testing import assert_isolated
from llmops.catalog.models import Dataset, ModelEntry

from .conftest import INSTRUCTIONS

pytestmark = pytest.mark.django_db


def test_index_shows_the_demo_model_and_the_forms(auth_client):
    page = auth_client.get("/models/").content.decode()
    assert "Demo model (bundled)" in page and "<code>demo</code>" in page and "not built yet" in page
    assert "Register a model" in page and "Upload a dataset" in page and "No datasets yet" in page


def test_register_from_the_form(auth_client, model_folder):
    response = auth_client.post("/models/register/", {"reference": str(model_folder), "name": "Mine"})
    assert response.status_code == 302
    page = auth_client.get("/models/").content.decode()
    assert "Mine" in page and "LlamaForCausalLM" in page and "bfloat16" in page


def test_register_errors_come_back_in_the_htmx_partial(auth_client):
    response = auth_client.post("/models/register/", {"reference": "/etc/passwd"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and 'id="models"' in body and "<html" not in body
    assert "inside one of the model folders" in body
    full = auth_client.post("/models/register/", {"reference": "not a model!"})
    assert full.status_code == 422 and "<html" in full.content.decode()
    assert not ModelEntry.objects.exists()


def test_upload_leads_to_the_preview_with_row_errors(auth_client):
    upload = SimpleUploadedFile("tasks.jsonl", INSTRUCTIONS)
    response = auth_client.post("/models/datasets/upload/", {"file": upload, "format": "auto", "name": ""})
    dataset = Dataset.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/datasets/{dataset.pk}/"
    page = auth_client.get(response["Location"]).content.decode()
    assert (
        "Rows that were skipped" in page
        and "not valid JSON" in page
        and "&#x27;output&#x27; is missing" in page
    )
    assert "Name a colour" in page and "usable rows" in page


def test_htmx_upload_redirects_and_bad_files_show_why(auth_client):
    upload = SimpleUploadedFile("tasks.jsonl", INSTRUCTIONS)
    ok = auth_client.post(
        "/models/datasets/upload/", {"file": upload, "format": "auto"}, HTTP_HX_REQUEST="true"
    )
    assert ok.status_code == 204 and ok["HX-Redirect"].startswith("/models/datasets/")
    bad = SimpleUploadedFile("bad.jsonl", b"{nope\n")
    response = auth_client.post(
        "/models/datasets/upload/", {"file": bad, "format": "auto"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "no usable rows" in response.content.decode()
    assert Dataset.objects.count() == 1


def test_other_workspaces_pages_are_404(client, user, other_user, model_folder):
    from llmops.catalog import services

    workspace = other_user.workspaces.first()
    dataset = services.dataset_upload(
        user=other_user, workspace=workspace, upload=SimpleUploadedFile("secret.jsonl", INSTRUCTIONS)
    )
    entry = services.model_register(user=other_user, workspace=workspace, reference=str(model_folder))
    client.force_login(user)
    assert_isolated(client, f"/models/datasets/{dataset.pk}/", hidden=["secret"])
    assert_isolated(
        client, f"/models/datasets/{dataset.pk}/delete/", f"/models/{entry.pk}/delete/", methods=("post",)
    )
    page = client.get("/models/").content.decode()
    assert "secret" not in page and "small-llama" not in page
    assert Dataset.objects.filter(pk=dataset.pk).exists() and ModelEntry.objects.filter(pk=entry.pk).exists()


def test_viewers_see_no_forms(client, user, other_user):
    from llmops.accounts.models import Role
    from llmops.accounts.services import membership_set

    workspace = user.workspaces.first()
    membership_set(workspace=workspace, user=other_user, role=Role.VIEWER)
    client.force_login(other_user)
    session = client.session
    session["workspace_id"] = workspace.pk
    session.save()
    page = client.get("/models/").content.decode()
    assert "Register a model" not in page and "Upload a dataset" not in page
    response = client.post("/models/register/", {"reference": "org/model"})
    assert response.status_code == 403
