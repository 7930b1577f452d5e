"""What the engine hands to source.model and source.dataset via ctx.resource()."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from llmops.catalog import services
from llmops.catalog.resources import dataset_resource, model_resource
from pipelines.context import NodeFailure

from .conftest import INSTRUCTIONS

pytestmark = pytest.mark.django_db


def test_model_references(user, settings, catalog_dirs, model_folder):
    workspace = user.workspaces.first()
    demo = model_resource(workspace_id=workspace.pk, ref="demo")
    assert demo["source"] == "demo" and demo["path"] == str(settings.LLMOPS_DEMO_MODEL_DIR)
    assert demo["demo_steps"] == settings.LLMOPS_DEMO_STEPS
    local = model_resource(workspace_id=workspace.pk, ref=str(model_folder))
    assert (local["source"], local["path"]) == ("local", str(model_folder.resolve()))
    hub = model_resource(workspace_id=workspace.pk, ref="org/model")
    assert (hub["source"], hub["hub_id"], hub["trust_remote_code_allowed"]) == ("hub", "org/model", False)
    with pytest.raises(NodeFailure, match="inside one of the model folders"):
        model_resource(workspace_id=workspace.pk, ref="/etc")
    with pytest.raises(NodeFailure, match="neither"):
        model_resource(workspace_id=workspace.pk, ref="no such thing!")


def test_remote_code_needs_the_setting_and_the_registration(user, settings):
    workspace = user.workspaces.first()
    settings.LLMOPS_ALLOW_TRUST_REMOTE_CODE = True
    services.model_register(user=user, workspace=workspace, reference="org/trusted", trust_remote_code=True)
    assert model_resource(workspace_id=workspace.pk, ref="org/trusted")["trust_remote_code_allowed"]
    services.model_register(user=user, workspace=workspace, reference="org/untrusted")
    assert not model_resource(workspace_id=workspace.pk, ref="org/untrusted")["trust_remote_code_allowed"]


@pytest.mark.services
def test_dataset_resource_is_the_stored_file_of_this_workspace_only(user, other_user):
    workspace = user.workspaces.first()
    dataset = services.dataset_upload(
        user=user, workspace=workspace, upload=SimpleUploadedFile("tasks.jsonl", INSTRUCTIONS)
    )
    resource = dataset_resource(workspace_id=workspace.pk, ref=dataset.pk)
    assert resource["filename"] == "tasks.jsonl" and resource["format"] == "instruction"
    with open(resource["path"], "rb") as handle:
        assert handle.read() == INSTRUCTIONS
    with pytest.raises(NodeFailure, match="does not exist in this workspace"):
        dataset_resource(workspace_id=other_user.workspaces.first().pk, ref=dataset.pk)
    with pytest.raises(NodeFailure, match="whole number"):
        dataset_resource(workspace_id=workspace.pk, ref="abc")
