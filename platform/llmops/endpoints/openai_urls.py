"""The OpenAI-compatible API, mounted at /v1/ (config/urls.py:
``path("v1/", include("llmops.endpoints.openai_urls"))``): point the official ``openai``
client's ``base_url`` at ``<site>/v1`` with an endpoint key as ``api_key`` and the endpoint's
slug as ``model``."""

from __future__ import annotations

from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from llmops.endpoints import handlers

# Key-authenticated (no cookies are read), so CSRF does not apply: exempt.
chat_completions = csrf_exempt(require_POST(handlers.chat_completions))
models = csrf_exempt(require_GET(handlers.models))

app_name = "openai"
urlpatterns = [
    path("chat/completions", chat_completions, name="chat-completions"),
    path("models", models, name="models"),
    path("models/<str:model>", models, name="model"),
]
