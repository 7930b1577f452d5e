"""The routes of the serving lane (see lane.py): the same views as in the site's URLconf."""

from __future__ import annotations

from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from llmops.endpoints import handlers


@csrf_exempt
@require_POST
async def query(request, slug: str):
    return await handlers.query(request, slug)


urlpatterns = [
    path("api/v1/endpoints/<str:slug>/query", query, name="lane-query"),
    path("v1/", include("llmops.endpoints.openai_urls")),
]
