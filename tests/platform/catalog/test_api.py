"""/api/v1/models and /api/v1/datasets: register, upload, preview, errors, isolation."""

from __future__ import annotations

import pytest

from llmops.accounts.testing import assert_isolated
from llmops.catalog.models import Dataset, ModelEntry

from .conftest import INSTRUCTIONS

pytestmark = pytest.mark.django_db


@pytest.mark.services
def test_register_a_local_folder_reads_its_facts(api, model_folder):
    response = api.post("/models", {"reference": str(model_folder), "name": "Small"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["source"], body["status"], body["architecture"], body["dtype"]) == (
        "local",
        "ready",
        "LlamaForCausalLM",
        "bfloat16",
    )
    assert body["parameters"] == 2 * 16 * 8 + 2 * (4 * 64 + 8)
    assert body["context_length"] == 64 and body["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    listed = api.get("/models").json()
    assert [m["name"] for m in listed["items"]] == ["Small"]
    assert listed["demo"]["reference"] == "demo" and listed["demo"]["status"] == "not built"


def test_register_a_hub_id_not_cached_waits_for_a_worker(api, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    body = api.post("/models", {"reference": "meta-llama/Llama-2-7b-hf"}).json()
    assert (body["source"], body["status"], body["name"]) == ("hub", "remote", "Llama-2-7b-hf")
    assert "downloads it" in body["status_detail"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"reference": "/etc"}, "reference", "inside one of the model folders"),
        ({"reference": "relative/../../x"}, "reference", "hub id"),
        ({"reference": "demo"}, "reference", "always available"),
        ({"reference": "org/model", "revision": "bad revision!"}, "revision", "branch, tag or commit"),
        ({"reference": "org/model", "trust_remote_code": True}, "trust_remote_code", "administrator"),
        ({"name": "no reference"}, "reference", "Field required"),
    ],
)
def test_bad_model_registrations_name_the_field(api, body, field, message):
    response = api.post("/models", body)
    assert response.status_code == 422
    assert field in response.json()["errors"] and message in response.content.decode()


def test_a_folder_that_is_not_a_model_is_refused(api, catalog_dirs):
    folder = catalog_dirs / "models" / "pickled"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    response = api.post("/models", {"reference": str(folder)})
    assert response.status_code == 422 and "pickle" in response.json()["detail"]


@pytest.mark.services
def test_upload_keeps_good_rows_and_reports_bad_lines(api):
    response = api.upload("/datasets", "tasks.jsonl", INSTRUCTIONS, name="Tasks")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["format"], body["rows"], body["error_count"]) == ("Tasks", "instruction", 2, 2)
    assert [e["line"] for e in body["errors"]] == [2, 3]
    assert body["preview"][1] == {"instruction": "Name a colour", "input": "", "output": "red"}
    detail = api.get(f"/datasets/{body['id']}").json()
    assert detail["errors"][1]["reason"] == "'output' is missing or empty"
    assert [d["id"] for d in api.get("/datasets").json()["items"]] == [body["id"]]
    assert Dataset.objects.get(pk=body["id"]).sha256


def test_upload_csv_labels(api):
    body = api.upload(
        "/datasets", "news.csv", b"text,label\nGoal in the last minute,sports\nRates rise,business\n"
    ).json()
    assert (body["format"], body["labels"]) == ("classification", ["business", "sports"])


@pytest.mark.parametrize(
    ("name", "content", "fields", "status", "message"),
    [
        ("empty.jsonl", b"{broken\n", {}, 422, "no usable rows"),
        ("model.bin", b"x", {}, 422, "Upload a .jsonl"),
        ("a.jsonl", b'{"text": "x"}\n', {"format": "yaml"}, 422, "format"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(api, name, content, fields, status, message):
    response = api.upload("/datasets", name, content, **fields)
    assert response.status_code == status and message in response.content.decode()
    assert not Dataset.objects.exists()


def test_upload_without_a_file_is_a_400(api):
    response = api.client.post("/api/v1/datasets", data={"name": "x"}, **api.headers)
    assert response.status_code == 400 and "file" in response.json()["errors"]


@pytest.mark.services
def test_another_workspace_sees_nothing(api, other_api, client, other_user, model_folder):
    from llmops.accounts.services import api_token_create

    model_id = api.post("/models", {"reference": str(model_folder)}).json()["id"]
    dataset_id = api.upload("/datasets", "tasks.jsonl", INSTRUCTIONS).json()["id"]
    assert other_api.get("/models").json()["items"] == []
    assert other_api.get("/datasets").json()["items"] == []
    _, token = api_token_create(user=other_user, name="t2")
    assert_isolated(
        client,
        f"/api/v1/models/{model_id}",
        f"/api/v1/datasets/{dataset_id}",
        token=token,
        methods=("get", "delete"),
        hidden=["tasks.jsonl", "small-llama"],
    )
    assert ModelEntry.objects.filter(pk=model_id).exists() and Dataset.objects.filter(pk=dataset_id).exists()


def test_viewers_cannot_register_or_upload(api, user, other_user, other_api, model_folder):
    from llmops.accounts.models import Role
    from llmops.accounts.services import membership_set

    workspace = user.workspaces.first()
    membership_set(workspace=workspace, user=other_user, role=Role.VIEWER)
    response = other_api.post("/models", {"reference": str(model_folder), "workspace": workspace.pk})
    assert response.status_code == 403
    response = other_api.upload("/datasets", "t.jsonl", INSTRUCTIONS, workspace=str(workspace.pk))
    assert response.status_code == 403


def test_delete_dataset_removes_its_file(api, catalog_dirs):
    dataset_id = api.upload("/datasets", "tasks.jsonl", INSTRUCTIONS).json()["id"]
    stored = list((catalog_dirs / "media" / "datasets").rglob("*.jsonl"))
    assert len(stored) == 1
    assert api.delete(f"/datasets/{dataset_id}").status_code == 204
    assert not stored[0].exists() and api.get(f"/datasets/{dataset_id}").status_code == 404


def test_text_dataset_from_a_document_collection(api, user, other_api):
    from llmops.knowledge import services as knowledge

    collection = knowledge.collection_create(user=user, workspace=user.workspaces.first(), name="Handbook")
    text = b"# Leave\n\nStaff get thirty days of leave.\n\nAsk your manager first.\n"
    assert (
        knowledge.document_create(user=user, collection=collection, name="leave.md", data=text).status
        == "created"
    )
    response = api.post("/datasets/from-collection", {"collection": collection.pk})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["format"], body["filename"]) == ("Handbook (text)", "text", "Handbook.txt")
    assert {"text": "Staff get thirty days of leave."} in body["preview"]
    assert other_api.post("/datasets/from-collection", {"collection": collection.pk}).status_code == 422


def test_sample_datasets_for_the_templates(api):
    news = api.post("/datasets/samples/news").json()
    assert (news["format"], news["rows"], news["labels"]) == (
        "classification",
        160,
        ["business", "science", "sports", "world"],
    )
    chat = api.post("/datasets/samples/platform-chat").json()
    assert (chat["format"], chat["rows"], chat["error_count"]) == ("chat", 40, 0)
    assert api.post("/datasets/samples/nope").status_code == 422
