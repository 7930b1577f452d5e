"""Models page: the demo model, registered base models and datasets; a dataset's preview.

htmx requests get a partial of the same template as the full page (``catalog/index.html#models``
and ``#datasets``), so every partial URL also works as a full page.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.catalog import forms, selectors, services
from llmops.knowledge.selectors import collection_list
from pipelines.ml.modelinfo import human_count, human_size


def _no_workspace(request):
    return render(
        request,
        "core/section_empty.html",
        {
            "section": "models",
            "title": "Models and datasets",
            "empty_title": "No workspace",
            "empty_text": "You are not a member of any workspace yet. Ask an owner to invite you.",
        },
    )


def _context(request, **extra) -> dict:
    workspace = request.workspace
    demo = selectors.demo_model()
    info = demo.get("info") or {}
    demo["facts"] = {
        "parameters": human_count(info["parameters"]) if info else "",
        "size": human_size(info["size_bytes"]) if info else "",
    }
    context = {
        "section": "models",
        "title": "Models and datasets",
        "demo": demo,
        "models": selectors.model_list(user=request.user, workspace=workspace),
        "datasets": selectors.dataset_list(user=request.user, workspace=workspace),
        "can_edit": user_can(user=request.user, workspace=workspace, role=Role.EDITOR),
        "register_form": forms.ModelRegisterForm(),
        "upload_form": forms.DatasetUploadForm(),
        "collections": collection_list(user=request.user, workspace=workspace),
    }
    context.update(extra)
    return context


def _render_index(request, partial: str, status: int = 200, **extra) -> HttpResponse:
    template = f"catalog/index.html#{partial}" if getattr(request, "htmx", False) else "catalog/index.html"
    # htmx swaps only 2xx answers: a form with errors is a 200 there, a 422 for a plain form post.
    code = 200 if getattr(request, "htmx", False) else status
    return render(request, template, _context(request, **extra), status=code)


def _form_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_GET
@login_required
def index(request):
    if request.workspace is None:
        return _no_workspace(request)
    return render(request, "catalog/index.html", _context(request))


@require_POST
@login_required
def model_register(request):
    if request.workspace is None:
        return _no_workspace(request)
    form = forms.ModelRegisterForm(request.POST)
    if form.is_valid():
        try:
            entry = services.model_register(
                user=request.user, workspace=request.workspace, **form.cleaned_data
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"Registered {entry.name}.")
            if getattr(request, "htmx", False):
                return _render_index(request, "models")
            return redirect("catalog:index")
    return _render_index(request, "models", status=422, register_form=form)


@require_POST
@login_required
def model_delete(request, model_id: int):
    entry = selectors.model_get(user=request.user, model_id=model_id)
    services.model_delete(user=request.user, entry=entry)
    messages.success(request, f"Removed {entry.name} from the catalog (its files were not touched).")
    return redirect("catalog:index")


@require_POST
@login_required
def dataset_upload(request):
    if request.workspace is None:
        return _no_workspace(request)
    form = forms.DatasetUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            dataset = services.dataset_upload(
                user=request.user,
                workspace=request.workspace,
                upload=form.cleaned_data["file"],
                name=form.cleaned_data["name"],
                format=form.cleaned_data["format"],
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            url = reverse("catalog:dataset", args=[dataset.pk])
            if getattr(request, "htmx", False):
                return HttpResponse(status=204, headers={"HX-Redirect": url})
            return redirect(url)
    return _render_index(request, "datasets", status=422, upload_form=form)


@require_POST
@login_required
def dataset_from_collection(request):
    if request.workspace is None:
        return _no_workspace(request)
    try:
        collection_id = int(request.POST.get("collection", ""))
        dataset = services.dataset_from_collection(
            user=request.user,
            workspace=request.workspace,
            collection_id=collection_id,
            name=request.POST.get("name", ""),
        )
    except (ValueError, ValidationError) as exc:
        reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else "Choose a collection."
        return _render_index(request, "datasets", status=422, collection_error=reason)
    url = reverse("catalog:dataset", args=[dataset.pk])
    if getattr(request, "htmx", False):
        return HttpResponse(status=204, headers={"HX-Redirect": url})
    return redirect(url)


@require_POST
@login_required
def dataset_sample(request):
    if request.workspace is None:
        return _no_workspace(request)
    try:
        dataset = services.dataset_create_sample(
            user=request.user, workspace=request.workspace, sample=request.POST.get("sample", "")
        )
    except ValidationError as exc:
        return _render_index(request, "datasets", status=422, collection_error=" ".join(exc.messages))
    return redirect("catalog:dataset", dataset_id=dataset.pk)


@require_GET
@login_required
def dataset_detail(request, dataset_id: int):
    dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
    columns = _preview_columns(dataset.format)
    return render(
        request,
        "catalog/dataset.html",
        {
            "section": "models",
            "title": dataset.name,
            "dataset": dataset,
            "columns": columns,
            "rows": [_preview_cells(row, dataset.format) for row in dataset.preview],
            "can_edit": user_can(user=request.user, workspace=dataset.workspace, role=Role.EDITOR),
            "held_out": max(1, round(dataset.rows * 0.1)) if dataset.rows >= 2 else 0,
        },
    )


@require_POST
@login_required
def dataset_delete(request, dataset_id: int):
    dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
    try:
        services.dataset_delete(user=request.user, dataset=dataset)
    except OSError as exc:  # the row is gone; a file that could not be removed is only a warning
        messages.warning(request, f"Deleted, but the file could not be removed: {exc}")
    else:
        messages.success(request, f"Deleted the dataset {dataset.name}.")
    return redirect("catalog:index")


def _preview_columns(fmt: str) -> list[str]:
    return {
        "instruction": ["instruction", "input", "output"],
        "chat": ["conversation"],
        "classification": ["text", "label"],
    }.get(fmt, ["text"])


def _preview_cells(row: dict, fmt: str) -> list[str]:
    if fmt == "chat":
        return ["\n".join(f"{m['role']}: {m['content']}" for m in row.get("messages", []))]
    return [str(row.get(c, "")) for c in _preview_columns(fmt)]
