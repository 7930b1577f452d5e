"""Pages: list and gallery, create, builder, versions/restore, duplicate, import/export, delete,
and the server-rendered node form."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import pytest

from llmops.builder.models import Pipeline

pytestmark = pytest.mark.django_db


def test_empty_list_shows_the_empty_state_and_the_gallery(auth_client):
    html = auth_client.get("/pipelines/").content.decode()
    assert "Build your first pipeline" in html
    assert "Start from a template" in html
    assert "Q&amp;A over my documents (API)" in html and "Compare LoRA and QLoRA" in html


def test_list_shows_pipelines_with_their_status(auth_client, pipeline):
    html = auth_client.get("/pipelines/").content.decode()
    assert "Docs Q&amp;A" in html and "Ready to run" in html and "v1" in html
    partial = auth_client.get("/pipelines/", HTTP_HX_REQUEST="true").content.decode()
    assert "Docs Q&amp;A" in partial and "<html" not in partial


def test_create_page_and_post(auth_client):
    assert auth_client.get("/pipelines/new/").status_code == 200
    response = auth_client.post("/pipelines/new/", {"name": "Fresh", "description": ""})
    pipeline = Pipeline.objects.get(name="Fresh")
    assert response.status_code == 302 and response["Location"] == f"/pipelines/{pipeline.pk}/"
    assert auth_client.post("/pipelines/new/", {"name": ""}).status_code == 200  # form with errors


def test_create_from_template(auth_client):
    response = auth_client.post("/pipelines/templates/qa-over-documents/")
    pipeline = Pipeline.objects.get()
    assert response["Location"] == f"/pipelines/{pipeline.pk}/"
    assert pipeline.latest_version.node_count == 5
    assert auth_client.post("/pipelines/templates/nope/").status_code == 404


def test_builder_page_embeds_graph_and_palette(auth_client, pipeline):
    response = auth_client.get(f"/pipelines/{pipeline.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="builder-config"' in html and "drawflow-0.0.60.min.js" in html and "js/builder.js" in html
    start = html.index('id="builder-config"')
    config = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    assert config["pipelineId"] == pipeline.pk and config["graph"] == pipeline.latest_version.graph
    categories = [group["category"] for group in config["palette"]]
    assert categories[0] == "Sources"
    assert any(k["kind"] == "train.lora" for g in config["palette"] for k in g["kinds"])


def test_versions_page_and_restore(auth_client, pipeline, user):
    from llmops.builder.services import pipeline_save_version

    pipeline_save_version(pipeline=pipeline, user=user, graph={"nodes": []}, message="cleared it")
    html = auth_client.get(f"/pipelines/{pipeline.pk}/versions/").content.decode()
    assert "cleared it" in html and "alice" in html and "Restore" in html
    response = auth_client.post(f"/pipelines/{pipeline.pk}/versions/1/restore/")
    assert response.status_code == 302
    assert pipeline.latest_version.number == 3
    assert pipeline.latest_version.graph == pipeline.versions.get(number=1).graph


def test_duplicate_export_import_delete(auth_client, pipeline):
    response = auth_client.post(f"/pipelines/{pipeline.pk}/duplicate/")
    copy = Pipeline.objects.exclude(pk=pipeline.pk).get()
    assert response["Location"] == f"/pipelines/{copy.pk}/"

    response = auth_client.get(f"/pipelines/{pipeline.pk}/export/")
    assert response["Content-Disposition"] == 'attachment; filename="docs-qa-v1.json"'
    document = json.loads(response.content)
    upload = io.BytesIO(json.dumps(document).encode())
    upload.name = "docs.json"
    response = auth_client.post("/pipelines/import/", {"file": upload, "name": "Imported copy"})
    imported = Pipeline.objects.get(name="Imported copy")
    assert response["Location"] == f"/pipelines/{imported.pk}/"
    assert imported.latest_version.graph == pipeline.latest_version.graph

    bad = io.BytesIO(b"{nope")
    bad.name = "bad.json"
    html = auth_client.post("/pipelines/import/", {"file": bad}).content.decode()
    assert "not valid JSON" in html

    assert "Delete pipeline" in auth_client.get(f"/pipelines/{pipeline.pk}/delete/").content.decode()
    assert auth_client.post(f"/pipelines/{pipeline.pk}/delete/").status_code == 302
    assert auth_client.get(f"/pipelines/{pipeline.pk}/").status_code == 404


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/"),
        ("get", "/versions/"),
        ("post", "/versions/1/restore/"),
        ("post", "/duplicate/"),
        ("get", "/export/"),
        ("get", "/delete/"),
        ("post", "/delete/"),
        ("get", "/nodes/form?kind=quantize"),
    ],
)
def test_another_workspaces_pipeline_pages_are_404(client, other_user, pipeline, method, path):
    client.force_login(other_user)
    assert getattr(client, method)(f"/pipelines/{pipeline.pk}{path}").status_code == 404
    assert Pipeline.objects.get(pk=pipeline.pk).deleted_at is None


def test_viewer_sees_but_cannot_change(client, viewer, pipeline):
    client.force_login(viewer)
    html = client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert 'id="btn-save"' not in html and '"canEdit": false' in html
    assert client.post(f"/pipelines/{pipeline.pk}/delete/").status_code == 403
    assert client.post(f"/pipelines/{pipeline.pk}/versions/1/restore/").status_code == 403
    assert client.post(f"/pipelines/{pipeline.pk}/duplicate/").status_code == 403
    assert pipeline.versions.count() == 1


def test_anonymous_is_sent_to_login(client, pipeline):
    response = client.get(f"/pipelines/{pipeline.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the node form --------------------------------------------------------------------------


def form_result(html: str) -> dict:
    start = html.index('id="node-form-result"')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


def test_node_form_renders_widgets_from_the_schema(auth_client, pipeline):
    url = f"/pipelines/{pipeline.pk}/nodes/form?kind=train.lora&node=lora"
    html = auth_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html  # the partial
    assert 'name="f_r"' in html and 'type="number"' in html and 'min="1"' in html and 'max="1024"' in html
    assert 'step="any"' in html  # learning rate is a float
    assert '<select id="id_f_method"' in html and 'value="qlora"' in html
    assert 'type="checkbox" id="id_f_load_in_4bit"' in html
    assert "More settings" in html  # advanced fields folded away
    assert "Rank" in html or "rank" in html  # titles as labels
    full = auth_client.get(url).content.decode()
    assert "<html" in full and 'name="f_r"' in full  # the same URL works as a page

    rag = auth_client.get(f"/pipelines/{pipeline.pk}/nodes/form?kind=serve.rag&node=rag").content.decode()
    assert '<textarea id="id_f_prompt_template"' in rag
    evaluate = auth_client.get(f"/pipelines/{pipeline.pk}/nodes/form?kind=evaluate").content.decode()
    assert 'type="checkbox" id="id_f_metrics_1"' in evaluate


def test_node_form_shows_current_params(auth_client, pipeline):
    params = json.dumps({"chunk_size": 777, "follow_collection": True})
    html = auth_client.get(
        f"/pipelines/{pipeline.pk}/nodes/form", {"kind": "vectorize.faiss", "node": "index", "params": params}
    ).content.decode()
    assert 'value="777"' in html
    assert 'id="id_f_follow_collection" name="f_follow_collection" value="true" checked' in html


def test_node_form_post_returns_cleaned_params(auth_client, pipeline):
    response = auth_client.post(
        f"/pipelines/{pipeline.pk}/nodes/form",
        {
            "kind": "train.lora",
            "node": "lora",
            "f_r": "8",
            "f_method": "qlora",
            "f_learning_rate": "1e-4",
            "f_target_modules": "q_proj, v_proj",
            "f_batch_size": "auto",
            "f_load_in_4bit": "true",
        },
        HTTP_HX_REQUEST="true",
    )
    result = form_result(response.content.decode())
    assert result["valid"] is True and result["node"] == "lora" and result["submitted"] is True
    params = result["params"]
    assert params["r"] == 8 and params["method"] == "qlora" and params["learning_rate"] == 1e-4
    assert params["target_modules"] == ["q_proj", "v_proj"] and params["batch_size"] == "auto"
    assert params["load_in_4bit"] is True and params["packing"] is False


def test_node_form_post_shows_inline_errors(auth_client, pipeline):
    response = auth_client.post(
        f"/pipelines/{pipeline.pk}/nodes/form",
        {
            "kind": "vectorize.faiss",
            "node": "index",
            "f_chunk_size": "4",
            "f_chunk_overlap": "abc",
        },
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    result = form_result(html)
    assert result["valid"] is False
    assert set(result["errors"]) >= {"chunk_size", "chunk_overlap"}
    assert 'class="field has-error" data-field="chunk_size"' in html
    assert "greater than or equal to 16" in html
    assert result["params"]["chunk_size"] == 4  # the canvas keeps what was typed


def test_node_form_missing_required_uses_the_friendly_message(auth_client, pipeline):
    html = auth_client.post(
        f"/pipelines/{pipeline.pk}/nodes/form",
        {"kind": "source.documents", "node": "docs", "f_collection": ""},
    ).content.decode()
    assert "Choose a document collection." in html


def test_node_form_offers_the_workspaces_collections(auth_client, pipeline, workspace, user):
    from llmops.knowledge.models import Collection

    Collection.objects.create(workspace=workspace, name="Handbook", created_by=user)
    html = auth_client.get(f"/pipelines/{pipeline.pk}/nodes/form?kind=source.documents").content.decode()
    assert '<select id="id_f_collection"' in html and "Handbook" in html


def test_node_form_unknown_kind_is_404(auth_client, pipeline):
    assert auth_client.get(f"/pipelines/{pipeline.pk}/nodes/form?kind=nope").status_code == 404
    bad_params = f"/pipelines/{pipeline.pk}/nodes/form?kind=quantize&params=%7Bbad"
    assert auth_client.get(bad_params).status_code == 200


@pytest.mark.parametrize(
    "kind",
    [
        "source.documents",
        "source.dataset",
        "source.model",
        "vectorize.faiss",
        "quantize",
        "train.lora",
        "evaluate",
        "serve.rag",
        "publish.api",
    ],
)
def test_every_kinds_default_form_round_trips(auth_client, pipeline, kind):
    """Posting a form exactly as rendered with defaults gives the defaults back (or only the
    'required' errors of fields that have no default)."""
    html = auth_client.get(f"/pipelines/{pipeline.pk}/nodes/form?kind={kind}&node=n").content.decode()
    data = _form_data(html)
    result = form_result(auth_client.post(f"/pipelines/{pipeline.pk}/nodes/form", data).content.decode())
    from pipelines.registry import get_spec

    spec = get_spec(kind)
    required = {n for n, f in spec.params.model_fields.items() if f.is_required()}
    assert set(result["errors"]) <= required
    for name, value in spec.default_params().items():
        assert result["params"][name] == value, name


class _FormFields(HTMLParser):
    """What a browser would submit for the form as rendered (defaults, checked boxes, selected options)."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._chosen = False
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.data.setdefault(a["name"], []).append(a.get("value") or "")
        elif tag == "select":
            self._select, self._first_option, self._chosen = a.get("name"), None, False
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self.data.setdefault(self._select, []).append(a.get("value", ""))
                self._chosen = True
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.data.setdefault(self._textarea, []).append("")

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            if not self._chosen:
                self.data.setdefault(self._select, []).append(self._first_option or "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, text):
        if self._textarea:
            self.data[self._textarea][-1] += text


def _form_data(html: str) -> dict:
    parser = _FormFields()
    start = html.index('<form class="node-form"')
    parser.feed(html[start : html.index("</form>", start)])
    return parser.data


def test_list_queries_do_not_grow_with_the_number_of_pipelines(
    auth_client, workspace, user, django_assert_max_num_queries
):
    from llmops.builder.services import pipeline_create

    for i in range(8):
        pipeline_create(workspace=workspace, user=user, name=f"P{i}")
    with django_assert_max_num_queries(10):
        html = auth_client.get("/pipelines/").content.decode()
    assert "P7" in html
