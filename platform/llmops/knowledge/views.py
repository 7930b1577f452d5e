"""Knowledge pages: collections, a collection (upload, documents, indexes, search playground),
a document preview. htmx requests get a partial of the same template as the full page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.knowledge import forms, indexing, selectors, services, storage
from llmops.knowledge.models import Collection
from llmops.knowledge.search import SearchError, highlight, index_search


def _template(request, name: str, partial: str) -> str:
    return f"{name}#{partial}" if getattr(request, "htmx", False) else name


def _status(request, status: int) -> int:
    """htmx swaps only 2xx answers; a refusal is still content to show in the partial."""
    return 200 if getattr(request, "htmx", False) else status


def _can_edit(request, workspace) -> bool:
    return user_can(user=request.user, workspace=workspace, role=Role.EDITOR)


def _no_workspace(request):
    return render(
        request,
        "core/section_empty.html",
        {
            "section": "knowledge",
            "title": "Knowledge",
            "empty_title": "No workspace",
            "empty_text": "You are not a member of any workspace yet. Ask an owner to invite you.",
        },
    )


@require_GET
@login_required
def index(request):
    if request.workspace is None:
        return _no_workspace(request)
    return render(
        request,
        "knowledge/index.html",
        {
            "section": "knowledge",
            "title": "Knowledge",
            "collections": selectors.collection_list(user=request.user, workspace=request.workspace),
            "form": forms.CollectionForm(),
            "can_edit": _can_edit(request, request.workspace),
        },
    )


@require_POST
@login_required
def collection_create(request):
    if request.workspace is None:
        return _no_workspace(request)
    form = forms.CollectionForm(request.POST)
    if form.is_valid():
        try:
            collection = services.collection_create(
                user=request.user, workspace=request.workspace, **form.cleaned_data
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("knowledge:collection", collection_id=collection.pk)
    return render(
        request,
        "knowledge/index.html",
        {
            "section": "knowledge",
            "title": "Knowledge",
            "form": form,
            "can_edit": True,
            "collections": selectors.collection_list(user=request.user, workspace=request.workspace),
        },
        status=400,
    )


def _collection_context(request, collection: Collection, **extra) -> dict:
    indexes = list(selectors.index_list(user=request.user, collection=collection))
    ready = [i for i in indexes if i.version > 0]
    return {
        "section": "knowledge",
        "title": collection.name,
        "collection": collection,
        "documents": selectors.document_list(collection=collection),
        "states": selectors.state_counts(collection=collection),
        "indexes": indexes,
        "searchable": ready,
        "busy": selectors.collection_busy(collection=collection),
        "can_edit": _can_edit(request, collection.workspace),
        "index_form": forms.IndexForm(),
        "search_form": forms.SearchForm(),
        "max_upload_mb": settings.LLMOPS_MAX_UPLOAD_MB,
        "max_request_mb": settings.LLMOPS_MAX_REQUEST_MB,
        **extra,
    }


@require_GET
@login_required
def collection(request, collection_id: int):
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    return render(request, "knowledge/collection.html", _collection_context(request, collection))


@require_GET
@login_required
def collection_status(request, collection_id: int):
    """The documents table and index cards; the page polls it while something is in progress."""
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    return render(
        request,
        _template(request, "knowledge/collection.html", "live"),
        _collection_context(request, collection),
    )


@require_POST
@login_required
def collection_delete(request, collection_id: int):
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    services.collection_delete(user=request.user, collection=collection)
    messages.success(request, f"Deleted the collection “{collection.name}”.")
    return redirect("knowledge:index")


@require_POST
@login_required
def upload(request, collection_id: int):
    """The form upload (without JavaScript, or from htmx): per-file results above the list."""
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    if int(request.META.get("CONTENT_LENGTH") or 0) > services.max_request_bytes():
        results = [
            services.UploadResult(
                "(upload)",
                "error",
                reason=(
                    f"The upload is larger than the {settings.LLMOPS_MAX_REQUEST_MB} MB limit per request."
                ),
            )
        ]
        status = 413
    else:
        files = request.FILES.getlist("files")
        if not files:
            results, status = (
                [services.UploadResult("(none)", "error", reason="Choose at least one file.")],
                400,
            )
        else:
            results = services.documents_upload(user=request.user, collection=collection, uploads=files)
            status = 200
    context = _collection_context(request, collection, upload_results=results)
    return render(
        request,
        _template(request, "knowledge/collection.html", "upload-results"),
        context,
        status=_status(request, status),
    )


@require_POST
@login_required
def index_create(request, collection_id: int):
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    form = forms.IndexForm(request.POST)
    if form.is_valid():
        data = dict(form.cleaned_data)
        try:
            indexing.index_create(
                user=request.user,
                collection=collection,
                name=data.pop("name"),
                follow_collection=data.pop("follow_collection"),
                **data,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Building the search index. Progress shows below.")
            return redirect("knowledge:collection", collection_id=collection.pk)
    context = _collection_context(request, collection, index_form=form)
    return render(request, "knowledge/collection.html", context, status=400)


@require_POST
@login_required
def index_action(request, index_id: int, action: str):
    index = selectors.index_get(user=request.user, index_id=index_id)
    if not _can_edit(request, index.workspace):
        raise PermissionDenied("Changing an index needs the editor role in this workspace.")
    if action == "sync":
        indexing.index_sync_request(index=index, add_new=True, countdown=0)
    elif action == "follow":
        indexing.index_update(user=request.user, index=index, follow_collection=not index.follow_collection)
    elif action == "delete":
        indexing.index_delete(user=request.user, index=index)
    else:
        raise Http404("No such action")
    return redirect("knowledge:collection", collection_id=index.collection_id)


@require_POST
@login_required
def search(request, collection_id: int):
    collection = selectors.collection_get(user=request.user, collection_id=collection_id)
    form = forms.SearchForm(request.POST)
    context = _collection_context(request, collection, search_form=form)
    status = 200
    if form.is_valid():
        indexes = context["searchable"]
        chosen = next(
            (i for i in indexes if i.pk == form.cleaned_data.get("index")), indexes[0] if indexes else None
        )
        if chosen is None:
            context["search_error"], status = "Create a search index first (below), then ask again.", 409
        else:
            try:
                result = index_search(
                    index=chosen, query=form.cleaned_data["query"], k=form.cleaned_data["k"] or 5
                )
            except SearchError as exc:
                context["search_error"], status = exc.message, exc.status
            else:
                for hit in result["hits"]:
                    hit["html"] = highlight(hit["text"], hit["matches"])
                    hit["link"] = f"{hit['document']['url']}?index={chosen.pk}&chunk={hit['chunk']}#hit"
                context["search_result"], context["search_index"] = result, chosen
    else:
        status = 400
    return render(
        request,
        _template(request, "knowledge/collection.html", "search-results"),
        context,
        status=_status(request, status),
    )


@require_GET
@login_required
def document(request, document_id: int):
    document = selectors.document_get(user=request.user, document_id=document_id)
    parsed = selectors.document_parsed(document=document)
    text = parsed["text"] if parsed else ""
    before, hit, after = text, "", ""
    chunk = _requested_chunk(request, document)
    if chunk is not None and text:
        start, end = int(chunk.metadata.get("start", 0)), int(chunk.metadata.get("end", 0))
        if 0 <= start < end <= len(text):
            before, hit, after = text[:start], text[start:end], text[end:]
    return render(
        request,
        "knowledge/document.html",
        {
            "section": "knowledge",
            "title": document.name,
            "document": document,
            "collection": document.collection,
            "parsed": parsed,
            "before": before,
            "hit": hit,
            "after": after,
            "chunk": chunk,
            "chunks": document.chunks.count(),
            "can_edit": _can_edit(request, document.workspace),
            "max_upload_mb": settings.LLMOPS_MAX_UPLOAD_MB,
        },
    )


def _requested_chunk(request, document):
    try:
        index_id, vector_id = int(request.GET["index"]), int(request.GET["chunk"])
    except (KeyError, ValueError):
        return None
    return document.chunks.filter(index_id=index_id, vector_id=vector_id).first()


@require_GET
@login_required
def document_download(request, document_id: int):
    document = selectors.document_get(user=request.user, document_id=document_id)
    try:
        handle = storage.absolute(document.file_relpath).open("rb")
    except OSError as exc:
        raise Http404("The stored file is missing") from exc
    response = FileResponse(
        handle, as_attachment=True, filename=document.name, content_type=document.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_POST
@login_required
def document_delete(request, document_id: int):
    document = selectors.document_get(user=request.user, document_id=document_id)
    collection_id, name = document.collection_id, document.name
    services.document_delete(user=request.user, document=document)
    if getattr(request, "htmx", False):
        return HttpResponse("", headers={"HX-Trigger": "knowledge-changed"})
    messages.success(request, f"Deleted “{name}”.")
    return redirect("knowledge:collection", collection_id=collection_id)


@require_POST
@login_required
def document_replace(request, document_id: int):
    document = selectors.document_get(user=request.user, document_id=document_id)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a file to replace the document with.")
    else:
        result = services.document_replace(user=request.user, document=document, upload=upload)
        if result.status == "created":
            messages.success(request, f"Replaced with “{result.name}”.")
        else:
            messages.error(request, f"{result.name}: {result.reason}")
    return redirect(reverse("knowledge:document", args=[document_id]))
