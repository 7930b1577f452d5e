"""Endpoint pages: the list, one endpoint (playground, snippets, keys, usage, versions,
feedback, settings), publishing a run, hosted models. htmx requests get a partial of the same
template as the full page."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.endpoints import handlers, selectors, services
from llmops.endpoints.models import KeyScope
from llmops.endpoints.services import EndpointError
from llmops.endpoints.snippets import snippets
from llmops.runs.selectors import run_get

FRESH_KEY = "endpoints_fresh_key"  # session: a just-created secret, shown once on the next page


def _template(request, name: str, partial: str) -> str:
    return f"{name}#{partial}" if getattr(request, "htmx", False) else name


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _can_edit(request, workspace) -> bool:
    return user_can(user=request.user, workspace=workspace, role=Role.EDITOR)


def _remember_secret(request, *, slug: str, secret: str, name: str) -> None:
    request.session[FRESH_KEY] = {"slug": slug, "secret": secret, "name": name}


def _pop_secret(request, slug: str) -> dict | None:
    fresh = request.session.get(FRESH_KEY)
    if fresh and fresh.get("slug") == slug:
        del request.session[FRESH_KEY]
        return fresh
    return None


@require_GET
@login_required
def index(request):
    workspace = request.workspace
    endpoints = selectors.endpoint_list(user=request.user, workspace=workspace) if workspace else []
    return render(
        request,
        "endpoints/index.html",
        {
            "section": "endpoints",
            "title": "Endpoints",
            "endpoints": endpoints,
            "providers": selectors.provider_list(user=request.user, workspace=workspace) if workspace else [],
            "can_edit": bool(workspace) and _can_edit(request, workspace),
            "base_url": _base(request),
        },
    )


def _detail_context(request, endpoint, *, fresh: dict | None = None) -> dict:
    base = _base(request)
    return {
        "section": "endpoints",
        "title": endpoint.name,
        "endpoint": endpoint,
        "base_url": base,
        "version": endpoint.active_version,
        "versions": selectors.endpoint_versions(endpoint=endpoint),
        "keys": selectors.key_list(user=request.user, endpoint=endpoint),
        "fresh": fresh,
        "snippets": snippets(base_url=base, slug=endpoint.slug, secret=fresh["secret"] if fresh else None),
        "feedback": selectors.feedback_list(endpoint=endpoint, limit=20),
        "feedback_counts": selectors.feedback_counts(endpoint=endpoint),
        "requests": selectors.recent_requests(endpoint=endpoint, limit=15),
        "providers": selectors.provider_list(user=request.user, workspace=endpoint.workspace),
        "can_edit": _can_edit(request, endpoint.workspace),
        "facts": (endpoint.active_version.facts if endpoint.active_version else {}) or {},
    }


@require_GET
@login_required
def detail(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    context = _detail_context(request, endpoint, fresh=_pop_secret(request, slug))
    return render(request, "endpoints/detail.html", context)


@require_GET
@login_required
def usage(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    try:
        minutes = int(request.GET.get("minutes", 60))
    except ValueError:
        minutes = 60
    return JsonResponse(selectors.usage_series(endpoint=endpoint, minutes=minutes))


@require_POST
@login_required
async def playground(request, slug: str):
    """The page's chat box: the same path as /query, for signed-in members, without a key."""
    return await handlers.playground(request, slug)


@require_POST
@login_required
def feedback(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    try:
        data = json.loads(request.body or b"{}")
        item = services.feedback_create(
            endpoint=endpoint,
            rating=int(data.get("rating", 0)),
            request_id=str(data.get("request_id", ""))[:40],
            question=str(data.get("question", "")),
            answer=str(data.get("answer", "")),
            sources=data.get("sources") if isinstance(data.get("sources"), list) else None,
            comment=str(data.get("comment", "")),
            origin="playground",
            user=request.user,
        )
    except (ValueError, TypeError):
        return JsonResponse({"detail": "Send JSON with a rating of 1 or -1."}, status=422)
    except EndpointError as error:
        return JsonResponse({"detail": error.message, "field": error.field}, status=error.status)
    return JsonResponse({"id": item.pk, "rating": item.rating}, status=201)


@require_GET
@login_required
def feedback_export(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    only = request.GET.get("only", "all")
    response = StreamingHttpResponse(
        selectors.feedback_jsonl(endpoint=endpoint, only=only), content_type="application/x-ndjson"
    )
    response["Content-Disposition"] = f'attachment; filename="{endpoint.slug}-feedback.jsonl"'
    return response


# --- keys ---------------------------------------------------------------------------------------------


def _keys_response(request, endpoint, *, fresh: dict | None = None, error: str = "") -> HttpResponse:
    if getattr(request, "htmx", False):
        context = _detail_context(request, endpoint, fresh=fresh)
        context["key_error"] = error
        return render(request, "endpoints/detail.html#keys", context)
    if error:
        messages.error(request, error)
    elif fresh:
        _remember_secret(request, slug=endpoint.slug, secret=fresh["secret"], name=fresh["name"])
    return redirect(reverse("endpoints:detail", args=[endpoint.slug]) + "#keys")


@require_POST
@login_required
def key_create(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    scope = request.POST.get("scope", KeyScope.ENDPOINT)
    try:
        limit = request.POST.get("rate_limit_per_minute") or None
        key, secret = services.key_create(
            user=request.user,
            workspace=endpoint.workspace,
            endpoint=endpoint,
            name=request.POST.get("name", ""),
            scope=scope,
            rate_limit_per_minute=int(limit) if limit else None,
        )
    except ValueError:
        return _keys_response(request, endpoint, error="The rate limit is a whole number.")
    except EndpointError as error:
        return _keys_response(request, endpoint, error=error.message)
    return _keys_response(
        request, endpoint, fresh={"secret": secret, "name": key.name, "slug": endpoint.slug}
    )


@require_POST
@login_required
def key_revoke(request, key_id: int):
    key = selectors.key_get(user=request.user, key_id=key_id)
    services.key_revoke(user=request.user, key=key)
    slug = request.POST.get("endpoint") or (key.endpoint.slug if key.endpoint else "")
    if slug:
        endpoint = selectors.endpoint_get(user=request.user, slug=slug)
        return _keys_response(request, endpoint)
    return redirect("endpoints:index")


# --- versions and settings ----------------------------------------------------------------------------


def _action(request, slug: str, action) -> HttpResponse:
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    try:
        note = action(endpoint)
    except EndpointError as error:
        messages.error(request, error.message)
    else:
        if note:
            messages.success(request, note)
    return redirect("endpoints:detail", slug=endpoint.slug)


@require_POST
@login_required
def rollback(request, slug: str):
    def act(endpoint):
        try:
            number = int(request.POST.get("version", ""))
        except ValueError as exc:
            raise EndpointError("Choose a version.") from exc
        services.endpoint_rollback(user=request.user, endpoint=endpoint, number=number)
        return f"Now answering with version {number}."

    return _action(request, slug, act)


@require_POST
@login_required
def set_published(request, slug: str):
    published = request.POST.get("published") == "1"

    def act(endpoint):
        services.endpoint_set_published(user=request.user, endpoint=endpoint, published=published)
        return (
            "Published: the endpoint answers again."
            if published
            else "Unpublished: every request now gets 404."
        )

    return _action(request, slug, act)


@require_POST
@login_required
def settings_update(request, slug: str):
    def act(endpoint):
        try:
            limit = int(request.POST.get("rate_limit_per_minute", endpoint.rate_limit_per_minute))
            quota = int(request.POST.get("monthly_quota", endpoint.monthly_quota) or 0)
            provider = request.POST.get("provider", "")
            provider_id = int(provider) if provider else None
        except ValueError as exc:
            raise EndpointError("Limits are whole numbers.") from exc
        services.endpoint_update(
            user=request.user,
            endpoint=endpoint,
            rate_limit_per_minute=limit,
            monthly_quota=quota,
            provider_id=provider_id,
            description=request.POST.get("description"),
        )
        return "Settings saved."

    return _action(request, slug, act)


@require_POST
@login_required
def delete(request, slug: str):
    endpoint = selectors.endpoint_get(user=request.user, slug=slug)
    services.endpoint_delete(user=request.user, endpoint=endpoint)
    messages.success(request, f"Endpoint {slug} deleted.")
    return redirect("endpoints:index")


# --- publishing a run ------------------------------------------------------------------------------


@login_required
def publish(request):
    """GET: confirm publishing a run (full page). POST: publish, make a first key, show it."""
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    source = request.POST if request.method == "POST" else request.GET
    try:
        run = run_get(user=request.user, run_id=int(source.get("run", "")))
    except ValueError:
        return redirect("endpoints:index")
    context = {
        "section": "endpoints",
        "title": "Publish",
        "run": run,
        "publishable": selectors.run_publishable(run=run),
        "existing": selectors.endpoints_of_run(run=run),
        "slug": source.get("slug", ""),
    }
    if request.method == "GET":
        return render(request, "endpoints/publish.html", context)
    try:
        publications = services.endpoints_publish_run(
            user=request.user, run=run, slug=request.POST.get("slug") or None
        )
    except EndpointError as error:
        context["error"] = error.message
        return render(
            request, "endpoints/publish.html", context, status=error.status if error.status < 500 else 400
        )
    first = publications[0].endpoint
    if not first.keys.filter(revoked_at__isnull=True).exists():
        key, secret = services.key_create(
            user=request.user, workspace=first.workspace, endpoint=first, name="First key"
        )
        _remember_secret(request, slug=first.slug, secret=secret, name=key.name)
    verb = (
        "Published" if publications[0].created else f"Published version {publications[0].version.number} of"
    )
    messages.success(request, f"{verb} {first.slug}.")
    return redirect("endpoints:detail", slug=first.slug)


# --- hosted models --------------------------------------------------------------------------------


@require_POST
@login_required
def provider_create(request):
    try:
        services.provider_create(
            user=request.user,
            workspace=request.workspace,
            name=request.POST.get("name", ""),
            base_url=request.POST.get("base_url", ""),
            model=request.POST.get("model", ""),
            api_key=request.POST.get("api_key", ""),
        )
    except EndpointError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Hosted model added; choose it in an endpoint's settings.")
    return redirect(reverse("endpoints:index") + "#hosted")


@require_POST
@login_required
def provider_delete(request, provider_id: int):
    provider = selectors.provider_get(user=request.user, provider_id=provider_id)
    services.provider_delete(user=request.user, provider=provider)
    messages.success(request, f"Hosted model {provider.name} removed.")
    return redirect(reverse("endpoints:index") + "#hosted")
