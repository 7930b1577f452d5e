from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from llmops.core.health import health_report


@require_GET
@never_cache
async def healthz(request):
    # Async, and the probe in its own thread: under ASGI a sync view would hold Django's one
    # shared sync thread for the whole probe and stall every other page meanwhile.
    report = await sync_to_async(health_report, thread_sensitive=False)()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@require_GET
@login_required
def home(request):
    return render(request, "core/home.html", {"section": "home"})


# The brand's diamond, so browsers asking for /favicon.ico get an icon instead of a logged 404.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<path d="M8 1 15 8 8 15 1 8z" fill="#3b5bdb"/></svg>'
)


@require_GET
def favicon(request):
    response = HttpResponse(FAVICON_SVG, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
