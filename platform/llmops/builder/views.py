"""Pages: the pipeline list and gallery, the builder, versions, import/export, the node form.

Views stay thin: they read through selectors, write through one service, and answer htmx
requests with a partial of the same template that renders the full page.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.builder import forms, selectors, services


def _template(request, name: str, partial: str) -> str:
    """The partial for htmx requests, the full page otherwise (every partial URL is a page)."""
    return f"{name}#{partial}" if getattr(request, "htmx", False) else name


def _can_edit(request, workspace) -> bool:
    return user_can(user=request.user, workspace=workspace, role=Role.EDITOR)


def _no_workspace(request):
    return render(request, "core/section_empty.html", {
        "section": "pipelines", "title": "Pipelines", "empty_title": "No workspace",
        "empty_text": "You are not a member of any workspace yet. Ask an owner to invite you.",
    })


@require_GET
@login_required
def index(request):
    workspace = request.workspace
    if workspace is None:
        return _no_workspace(request)
    return render(request, _template(request, "builder/index.html", "pipeline-list"), {
        "section": "pipelines", "title": "Pipelines",
        "pipelines": selectors.with_latest(
            selectors.pipeline_list(user=request.user, workspace=workspace)[:500]),
        "templates": selectors.template_cards(),
        "can_edit": _can_edit(request, workspace),
        "form": forms.PipelineForm(),
    })


@require_http_methods(["GET", "POST"])
@login_required
def create(request):
    workspace = request.workspace
    if workspace is None:
        return _no_workspace(request)
    form = forms.PipelineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline = services.pipeline_create(
                workspace=workspace, user=request.user, **form.cleaned_data)
        except services.PipelineError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("builder:detail", pipeline_id=pipeline.pk)
    return render(request, "builder/create.html", {
        "section": "pipelines", "title": "New pipeline", "form": form,
    })


@require_POST
@login_required
def from_template(request, slug: str):
    workspace = request.workspace
    if workspace is None:
        return _no_workspace(request)
    pipeline = services.pipeline_create_from_template(workspace=workspace, user=request.user, slug=slug)
    messages.success(request, f"Created “{pipeline.name}”. Fill in what is marked in red, then Run.")
    return redirect("builder:detail", pipeline_id=pipeline.pk)


@require_GET
@login_required
def detail(request, pipeline_id: int):
    """The builder page."""
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    version = selectors.pipeline_version_get(pipeline=pipeline)
    return render(request, "builder/builder.html", {
        "section": "pipelines", "title": pipeline.name, "pipeline": pipeline, "version": version,
        "can_edit": _can_edit(request, pipeline.workspace),
        "builder_config": {
            "pipelineId": pipeline.pk, "name": pipeline.name, "version": version.number,
            "graph": version.graph, "palette": selectors.palette(),
            "canEdit": _can_edit(request, pipeline.workspace),
            "urls": {
                "api": f"/api/v1/pipelines/{pipeline.pk}",
                "nodeForm": f"/pipelines/{pipeline.pk}/nodes/form",
                "versions": f"/pipelines/{pipeline.pk}/versions/",
                "runs": f"/api/v1/pipelines/{pipeline.pk}/runs",
            },
        },
    })


@require_GET
@login_required
def versions(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    return render(request, _template(request, "builder/versions.html", "version-list"), {
        "section": "pipelines", "title": f"Versions of {pipeline.name}", "pipeline": pipeline,
        "versions": selectors.pipeline_versions(pipeline=pipeline),
        "can_edit": _can_edit(request, pipeline.workspace),
    })


@require_POST
@login_required
def restore(request, pipeline_id: int, number: int):
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    selectors.pipeline_version_get(pipeline=pipeline, number=number)
    version = services.pipeline_restore_version(pipeline=pipeline, user=request.user, number=number)
    messages.success(request, f"Version {number} restored as version {version.number}.")
    return redirect("builder:detail", pipeline_id=pipeline.pk)


@require_POST
@login_required
def duplicate(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    copy = services.pipeline_duplicate(pipeline=pipeline, user=request.user)
    messages.success(request, f"Duplicated as “{copy.name}”.")
    return redirect("builder:detail", pipeline_id=copy.pk)


@require_GET
@login_required
def export(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    number = request.GET.get("version")
    version = None
    if number:
        if not number.isdigit():
            raise Http404("No such version")
        version = selectors.pipeline_version_get(pipeline=pipeline, number=int(number))
    document = services.pipeline_export(pipeline=pipeline, version=version)
    response = JsonResponse(document, json_dumps_params={"indent": 2})
    filename = f"{slugify(pipeline.name) or 'pipeline'}-v{document['version']}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET", "POST"])
@login_required
def import_(request):
    workspace = request.workspace
    if workspace is None:
        return _no_workspace(request)
    form = forms.ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20
            form.add_error("file", f"The file is larger than {limit_mb} MB.")
        else:
            try:
                pipeline = services.pipeline_import(
                    workspace=workspace, user=request.user, data=upload.read(),
                    name=form.cleaned_data["name"] or None, filename=upload.name or "")
            except services.PipelineError as exc:
                form.add_error("file", exc.message)
            else:
                messages.success(request, f"Imported “{pipeline.name}”.")
                return redirect("builder:detail", pipeline_id=pipeline.pk)
    return render(request, "builder/import.html", {
        "section": "pipelines", "title": "Import a pipeline", "form": form,
    })


@require_http_methods(["GET", "POST"])
@login_required
def delete(request, pipeline_id: int):
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    if request.method == "POST":
        services.pipeline_delete(pipeline=pipeline, user=request.user)
        messages.success(request, f"Deleted “{pipeline.name}”.")
        if getattr(request, "htmx", False):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = "/pipelines/"
            return response
        return redirect("builder:index")
    return render(request, "builder/delete.html", {
        "section": "pipelines", "title": f"Delete {pipeline.name}", "pipeline": pipeline,
        "version_count": pipeline.versions.count(),
    })


@require_http_methods(["GET", "POST"])
@login_required
def node_form(request, pipeline_id: int):
    """The params form of one node kind, built from its JSON schema.

    GET ?kind=…&node=…&params=<json> renders the node's current values; POST validates the
    submitted fields with the params model and answers the form with inline errors, plus the
    params (cleaned when valid) for the canvas to store.
    """
    pipeline = selectors.pipeline_get(user=request.user, pipeline_id=pipeline_id)
    data = request.POST if request.method == "POST" else request.GET
    spec = selectors.node_spec(kind=data.get("kind", ""))
    fields = forms.schema_fields(spec.json_schema())
    forms.attach_choices(fields, user=request.user, workspace=pipeline.workspace)
    if request.method == "POST":
        params = forms.parse_submission(fields, request.POST)
        cleaned, errors = forms.validate_params(spec.params, params)
    else:
        params, cleaned, errors = _params_from_query(data.get("params", "")), None, {}
    forms.fill_values(fields, cleaned if cleaned is not None else params)
    for f in fields:
        f.error = errors.get(f.name, "")
    return render(request, _template(request, "builder/node_form.html", "node-form"), {
        "section": "pipelines", "title": spec.label, "pipeline": pipeline, "spec": spec,
        "node_id": data.get("node", "")[:64], "fields": fields,
        "basic_fields": [f for f in fields if not f.advanced],
        "advanced_fields": [f for f in fields if f.advanced],
        "form_errors": [m for k, m in errors.items() if k not in {f.name for f in fields}],
        "submitted": request.method == "POST", "valid": cleaned is not None,
        "result": {"node": data.get("node", "")[:64], "valid": cleaned is not None,
                   "submitted": request.method == "POST",
                   "params": cleaned if cleaned is not None else params, "errors": errors},
        "can_edit": _can_edit(request, pipeline.workspace),
    })


def _params_from_query(text: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
