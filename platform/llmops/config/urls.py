from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from llmops.api.api import api

urlpatterns = [
    path("", include("llmops.core.urls")),
    path("accounts/", include("llmops.accounts.urls")),
    path("pipelines/", include("llmops.builder.urls")),
    path("models/", include("llmops.catalog.urls")),
    path("runs/", include("llmops.runs.urls")),
    path("knowledge/", include("llmops.knowledge.urls")),
    path("endpoints/", include("llmops.endpoints.urls")),
    path("api/v1/", api.urls),
    # OpenAI-compatible chat completions and models for published endpoints.
    path("v1/", include("llmops.endpoints.openai_urls")),
    path("admin/", admin.site.urls),
]
