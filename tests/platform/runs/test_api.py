"""REST API for runs and artifacts (no worker: started runs wait in the broker)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


def _post(client, url, body=None, **extra):
    data = json.dumps(body) if body is not None else ""
    return client.post(url, data=data, content_type="application/json", **extra)


@pytest.fixture
def api(client, api_token):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return client


def test_start_a_run(api, chain_pipeline):
    res = _post(api, f"/api/v1/pipelines/{chain_pipeline.pk}/runs")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["status"] == "queued" and body["url"] == f"/runs/{body['id']}/"
    assert set(body["nodes"]) == {"src", "a"}
    assert all(n["status"] == "queued" for n in body["nodes"].values())
    assert body["nodes"]["a"]["kind"] == "test.step" and body["version"] == 1


def test_start_with_force_and_bad_bodies(api, chain_pipeline):
    url = f"/api/v1/pipelines/{chain_pipeline.pk}/runs"
    assert _post(api, url, {"force": True}).json()["force"] is True
    assert _post(api, url, {"forse": True}).status_code == 422
    bad = api.post(url, data="{nope", content_type="application/json")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]


def test_invalid_graph_is_a_422_with_the_report(api, user):
    from llmops.builder.services import pipeline_create
    from tests.gpu_worker.testkinds import graph

    pipeline = pipeline_create(
        workspace=user.workspaces.first(), user=user, name="bad", graph=graph([("j", "test.join", {})], [])
    )
    res = _post(api, f"/api/v1/pipelines/{pipeline.pk}/runs")
    assert res.status_code == 422
    assert res.json()["errors"] and res.json()["detail"].startswith("The pipeline is not valid yet")


def test_read_list_cancel_and_events(api, chain_pipeline):
    run_id = _post(api, f"/api/v1/pipelines/{chain_pipeline.pk}/runs").json()["id"]
    state = api.get(f"/api/v1/runs/{run_id}").json()
    assert state["id"] == run_id and state["pipeline"] == chain_pipeline.pk
    node = state["nodes"]["src"]
    assert {
        "kind",
        "status",
        "progress",
        "message",
        "eta_s",
        "started_at",
        "finished_at",
        "error",
        "attempt",
        "worker",
        "device",
    } <= set(node)
    assert [r["id"] for r in api.get(f"/api/v1/runs?pipeline={chain_pipeline.pk}").json()] == [run_id]
    events = api.get(f"/api/v1/runs/{run_id}/events").json()
    assert [e["seq"] for e in events["events"]] == list(range(1, events["last_seq"] + 1))
    later = api.get(f"/api/v1/runs/{run_id}/events?after=2").json()["events"]
    assert later[0]["seq"] == 3
    cancelled = _post(api, f"/api/v1/runs/{run_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert {n["status"] for n in cancelled["nodes"].values()} == {"cancelled"}
    retry = _post(api, f"/api/v1/runs/{run_id}/nodes/a/retry")
    assert retry.status_code == 200 and retry.json()["status"] == "running"
    assert _post(api, f"/api/v1/runs/{run_id}/nodes/a/retry").status_code == 409


def test_another_workspace_sees_nothing(client, chain_pipeline, user, other_user):
    from llmops.runs.services import run_start

    run = run_start(user=user, pipeline=chain_pipeline)
    client.force_login(other_user)
    assert client.get(f"/api/v1/runs/{run.pk}").status_code == 404
    assert client.get(f"/api/v1/runs/{run.pk}/events").status_code == 404
    assert client.get("/api/v1/runs").json() == []
    assert client.post(f"/api/v1/pipelines/{chain_pipeline.pk}/runs").status_code in (403, 404)


@pytest.fixture
def artifacts(user, tmp_path):
    from llmops.runs.storage import store_artifact

    workspace_id = user.workspaces.first().pk
    (tmp_path / "data.jsonl").write_text('{"q": 1}\n')
    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "sub" / "w.safetensors").write_bytes(b"\x00" * 64)
    file_ = store_artifact(
        workspace_id=workspace_id,
        key="k-file",
        type="Dataset",
        path=tmp_path / "data.jsonl",
        metadata={"rows": 1},
        node_run_id=None,
        port="dataset",
        input_ids=[],
    )
    dir_ = store_artifact(
        workspace_id=workspace_id,
        key="k-dir",
        type="Adapter",
        path=folder,
        metadata={},
        node_run_id=None,
        port="adapter",
        input_ids=[file_.pk],
    )
    meta = store_artifact(
        workspace_id=workspace_id,
        key="k-meta",
        type="Report",
        path=None,
        metadata={"perplexity": 12.5},
        node_run_id=None,
        port="report",
        input_ids=[],
    )
    return file_, dir_, meta


def test_artifacts_metadata_and_downloads(api, artifacts):
    file_, dir_, meta = artifacts
    body = api.get(f"/api/v1/artifacts/{dir_.pk}").json()
    assert body["type"] == "Adapter" and body["is_dir"] and body["inputs"] == [file_.pk]
    assert body["size"] == 66 and len(body["sha256"]) == 64
    res = api.get(f"/api/v1/artifacts/{file_.pk}/download")
    assert b"".join(res.streaming_content) == b'{"q": 1}\n'
    assert 'filename="data.jsonl"' in res["Content-Disposition"]
    res = api.get(f"/api/v1/artifacts/{dir_.pk}/download")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(res.streaming_content)))
    assert sorted(archive.namelist()) == ["adapter/adapter_config.json", "adapter/sub/w.safetensors"]
    assert api.get(f"/api/v1/artifacts/{meta.pk}/download").json()["metadata"] == {"perplexity": 12.5}


def test_artifacts_of_another_workspace_are_404(client, artifacts, other_user):
    client.force_login(other_user)
    assert client.get(f"/api/v1/artifacts/{artifacts[0].pk}").status_code == 404
    assert client.get(f"/api/v1/artifacts/{artifacts[0].pk}/download").status_code == 404
    assert client.get(f"/runs/artifacts/{artifacts[0].pk}/download/").status_code == 404


def test_the_openapi_schema_lists_the_run_endpoints(api):
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    for path in (
        "/api/v1/pipelines/{pipeline_id}/runs",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run_id}/nodes/{node_id}/retry",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/artifacts/{artifact_id}",
        "/api/v1/artifacts/{artifact_id}/download",
    ):
        assert path in paths, path
