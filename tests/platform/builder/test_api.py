"""REST API: pipelines, versions, validation, node kinds, templates; bad input; isolation."""

from __future__ import annotations

import json

import pytest

from llmops.builder.models import Pipeline, PipelineVersion

pytestmark = [pytest.mark.django_db, pytest.mark.services]


def test_node_kinds_have_ports_and_schema(api):
    response = api.get("/node-kinds")
    assert response.status_code == 200
    kinds = {k["kind"]: k for k in response.json()}
    assert {"source.documents", "vectorize.faiss", "train.lora", "serve.rag", "publish.api"} <= set(kinds)
    faiss = kinds["vectorize.faiss"]
    assert faiss["inputs"][0]["type"] == "Documents" and faiss["outputs"][0]["type"] == "VectorIndex"
    assert faiss["schema"]["properties"]["chunk_size"]["type"] == "integer"


def test_templates(api):
    names = {t["name"] for t in api.get("/templates").json()}
    assert {"Q&A over my documents (API)", "Fine-tune, quantize and serve", "Compare LoRA and QLoRA"} <= names


def test_create_get_list(api, graph, workspace):
    response = api.post("/pipelines", {"name": "Mine", "graph": graph})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == 1 and body["workspace"] == workspace.pk and body["graph"] == graph
    assert api.get(f"/pipelines/{body['id']}").json()["graph"] == graph
    assert [p["name"] for p in api.get("/pipelines").json()] == ["Mine"]


def test_create_from_template(api):
    response = api.post("/pipelines", {"name": "From gallery", "template": "qa-over-documents"})
    assert response.status_code == 201
    assert response.json()["name"] == "From gallery"
    assert len(response.json()["graph"]["nodes"]) == 5
    assert api.post("/pipelines", {"name": "x", "template": "nope"}).status_code == 404


def test_put_saves_a_new_version_and_answers_it(api, pipeline, graph):
    graph["nodes"][1]["params"]["chunk_size"] = 512
    response = api.put(f"/pipelines/{pipeline.pk}", {"graph": graph, "name": "Renamed", "message": "tuned"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["number"] == 2 and body["message"] == "tuned" and body["name"] == "Renamed"
    assert body["graph"] == graph and body["report"]["ok"] is True
    assert body["created_by"] == "alice"
    assert api.get(f"/pipelines/{pipeline.pk}").json()["graph"]["nodes"][1]["params"]["chunk_size"] == 512


def test_put_accepts_a_bare_graph(api, pipeline, graph):
    response = api.put(f"/pipelines/{pipeline.pk}", graph)
    assert response.status_code == 200
    assert response.json()["number"] == 2


def test_put_with_semantic_errors_saves_and_reports_them_on_the_node(api, pipeline, graph):
    graph["edges"].append({"from": ["model", "model"], "to": ["index", "documents"]})
    body = api.put(f"/pipelines/{pipeline.pk}", {"graph": graph}).json()
    assert body["validation"]["ok"] is False
    issue = next(i for i in body["report"]["errors"] if i["node"] == "index")
    assert "Documents" in issue["message"]


def test_versions_list_and_restore(api, pipeline, graph):
    api.put(f"/pipelines/{pipeline.pk}", {"graph": {"nodes": []}, "message": "cleared"})
    versions = api.get(f"/pipelines/{pipeline.pk}/versions").json()
    assert [(v["number"], v["message"], v["created_by"]) for v in versions] == [
        (2, "cleared", "alice"),
        (1, "Created", "alice"),
    ]
    assert api.get(f"/pipelines/{pipeline.pk}/versions/1").json()["graph"] == graph
    restored = api.post(f"/pipelines/{pipeline.pk}/versions/1/restore")
    assert restored.status_code == 201 and restored.json()["number"] == 3
    assert api.get(f"/pipelines/{pipeline.pk}").json()["graph"] == graph
    assert api.post(f"/pipelines/{pipeline.pk}/versions/9/restore").status_code == 404


def test_validate_latest_or_given_graph(api, pipeline, graph):
    assert api.post(f"/pipelines/{pipeline.pk}/validate").json()["ok"] is True
    graph["nodes"][1]["params"]["chunk_size"] = 1
    report = api.post(f"/pipelines/{pipeline.pk}/validate", {"graph": graph}).json()
    assert report["ok"] is False
    assert report["errors"][0]["node"] == "index" and report["errors"][0]["field"] == "chunk_size"
    bare = api.post(f"/pipelines/{pipeline.pk}/validate", {"nodes": [{"id": "x", "kind": "nope"}]}).json()
    assert bare["ok"] is False and bare["errors"][0]["node"] == "x"
    assert pipeline.versions.count() == 1  # validating never saves


def test_duplicate_export_import_delete(api, pipeline):
    copy = api.post(f"/pipelines/{pipeline.pk}/duplicate")
    assert copy.status_code == 201 and copy.json()["name"] == "Copy of Docs Q&A"
    document = api.get(f"/pipelines/{pipeline.pk}/export").json()
    imported = api.post("/pipelines/import", document)
    assert imported.status_code == 201 and imported.json()["graph"] == document["graph"]
    assert api.delete(f"/pipelines/{pipeline.pk}").status_code == 204
    assert api.get(f"/pipelines/{pipeline.pk}").status_code == 404
    assert pipeline.pk not in [p["id"] for p in api.get("/pipelines").json()]


BIG = "x" * (10 * 1024 * 1024)


@pytest.mark.parametrize(
    "raw, status, words",
    [
        ("{not json", 400, "Malformed JSON"),
        ('{"graph": ', 400, "Malformed JSON"),
        ("[" * 100_000 + "]" * 100_000, 400, "Malformed JSON"),
        ("[1, 2]", 422, "object"),
        ('"a string"', 422, "object"),
        ('{"graph": 5}', 422, "graph"),
        ('{"graph": {"nodes": "many"}}', 422, "nodes"),
        ('{"graph": {"nodes": [{"id": 1, "kind": "quantize"}]}}', 422, "id"),
        ('{"graph": {"nodes": [{"id": "a", "kind": "quantize", "position": ["x", 0]}]}}', 422, "position"),
        ('{"graph": {"nodes": [], "edges": [{"from": ["a"], "to": ["b", "c"]}]}}', 422, "from"),
        ('{"graph": {"nodes": []}, "colour": "red"}', 422, "colour"),
        ('{"graph": {"nodes": [], "extra": 1}}', 422, "extra"),
        ('{"graph": {"nodes": []}, "name": 7}', 422, "name"),
        ('{"graph": {"nodes": []}, "name": ""}', 422, "name"),
        ('{"graph": {"nodes": []}, "message": "' + "m" * 300 + '"}', 422, "message"),
        (
            '{"version": 1, "nodes": [{"id": "a", "kind": "quantize", "position": [1e999, 0]}]}',
            422,
            "position",
        ),
        (
            json.dumps({"graph": {"nodes": [{"id": f"n{i}", "kind": "q"} for i in range(5000)]}}),
            413,
            "5000 node",
        ),
        ('{"graph": {"nodes": [], "pad": "' + BIG + '"}}', 413, "MB"),
        ('{"graph": {"nodes": [{"id": "a", "kind": "quantize", "params": {"x": NaN}}]}}', 400, "NaN"),
        ('{"graph": {"nodes": []}, "name": "a\\u0000b"}', 400, "NUL"),
        ('{"graph": {"nodes": []}, "name": "\\ud800"}', 400, "surrogate"),
        (
            '{"graph": {"nodes": [{"id": "a", "kind": "quantize", "params": {"t": "\\udfff"}}]}}',
            400,
            "surrogate",
        ),
    ],
)
def test_bad_input_is_a_4xx_with_a_message_and_saves_nothing(api, pipeline, raw, status, words):
    name_before = pipeline.name
    response = api.put(f"/pipelines/{pipeline.pk}", raw=raw)
    assert response.status_code == status, response.content[:300]
    assert words in response.json()["detail"]
    assert pipeline.versions.count() == 1
    pipeline.refresh_from_db()
    assert pipeline.name == name_before


@pytest.mark.parametrize(
    "raw, status",
    [
        ("{oops", 400),
        ('{"name": ""}', 422),
        ('{"name": "x", "unknown": 1}', 422),
        ('{"name": "x", "graph": {"nodes": [{"id": "a"}]}}', 422),
        (
            json.dumps(
                {"name": "x", "graph": {"nodes": [{"id": f"n{i}", "kind": "q"} for i in range(5000)]}}
            ),
            413,
        ),
    ],
)
def test_bad_create_saves_nothing(api, raw, status):
    response = api.post("/pipelines", raw=raw)
    assert response.status_code == status
    assert response.json()["detail"]
    assert not Pipeline.objects.exists() and not PipelineVersion.objects.exists()


def test_validate_refuses_bad_bodies(api, pipeline):
    assert api.post(f"/pipelines/{pipeline.pk}/validate", raw="{x").status_code == 400
    too_many = {"nodes": [{"id": f"n{i}", "kind": "q"} for i in range(5000)]}
    assert api.post(f"/pipelines/{pipeline.pk}/validate", too_many).status_code == 413


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", ""),
        ("put", ""),
        ("delete", ""),
        ("get", "/versions"),
        ("get", "/versions/1"),
        ("post", "/validate"),
        ("post", "/duplicate"),
        ("get", "/export"),
        ("post", "/versions/1/restore"),
    ],
)
def test_another_workspaces_pipeline_is_404(other_api, pipeline, graph, method, path):
    if method in ("put", "post"):
        response = getattr(other_api, method)(f"/pipelines/{pipeline.pk}{path}", {"graph": graph})
    else:
        response = getattr(other_api, method)(f"/pipelines/{pipeline.pk}{path}")
    assert response.status_code == 404
    assert Pipeline.objects.get(pk=pipeline.pk).deleted_at is None
    assert pipeline.versions.count() == 1


def test_viewer_reads_but_cannot_write(viewer_api, pipeline, graph):
    assert viewer_api.get(f"/pipelines/{pipeline.pk}").status_code == 200
    assert viewer_api.post(f"/pipelines/{pipeline.pk}/validate").status_code == 200
    for response in (
        viewer_api.put(f"/pipelines/{pipeline.pk}", {"graph": graph}),
        viewer_api.delete(f"/pipelines/{pipeline.pk}"),
        viewer_api.post(f"/pipelines/{pipeline.pk}/versions/1/restore"),
        viewer_api.post(f"/pipelines/{pipeline.pk}/duplicate"),
        viewer_api.post("/pipelines", {"name": "x", "workspace": pipeline.workspace_id}),
    ):
        assert response.status_code == 403, response.content
        assert "Viewers" in response.json()["detail"]
    assert pipeline.versions.count() == 1


def test_absurd_ids_are_404(api, auth_client, pipeline):
    huge = 10**30
    assert api.get(f"/pipelines/{huge}").status_code == 404
    assert api.get(f"/pipelines/{pipeline.pk}/versions/{huge}").status_code == 404
    assert api.post(f"/pipelines/{pipeline.pk}/versions/{huge}/restore").status_code == 404
    assert auth_client.get(f"/pipelines/{huge}/").status_code == 404
    assert auth_client.get(f"/pipelines/{pipeline.pk}/export/?version={huge}").status_code == 404
    assert api.get(f"/pipelines?workspace={huge}").json() == []
    assert api.post("/pipelines", {"name": "x", "workspace": huge}).status_code == 404
    assert api.post(f"/pipelines/import?workspace={huge}", {"nodes": []}).status_code == 404


def test_anonymous_is_401(client, pipeline):
    assert client.get(f"/api/v1/pipelines/{pipeline.pk}").status_code == 401
    assert client.get("/api/v1/node-kinds").status_code == 401


def test_create_in_a_foreign_workspace_is_404(api, other_user):
    response = api.post("/pipelines", {"name": "x", "workspace": other_user.workspaces.get().pk})
    assert response.status_code == 404
    assert not Pipeline.objects.exists()


def test_browser_session_needs_csrf(user, pipeline, graph):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.put(
        f"/api/v1/pipelines/{pipeline.pk}", json.dumps({"graph": graph}), content_type="application/json"
    )
    assert response.status_code in (401, 403)
    browser.get(f"/pipelines/{pipeline.pk}/")
    token = browser.cookies["csrftoken"].value
    response = browser.put(
        f"/api/v1/pipelines/{pipeline.pk}",
        json.dumps({"graph": graph}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200
