"""The project's URLconf, plus /v1/ when config/urls.py does not mount it yet (it should:
``path("v1/", include("llmops.endpoints.openai_urls"))``); harmless once it does."""

from __future__ import annotations

from django.urls import include, path

from llmops.config.urls import urlpatterns as project_urlpatterns

urlpatterns = list(project_urlpatterns)
if not any(str(getattr(p, "pattern", "")) == "v1/" for p in urlpatterns):
    urlpatterns.append(path("v1/", include("llmops.endpoints.openai_urls")))
