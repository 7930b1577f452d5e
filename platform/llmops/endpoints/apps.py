from __future__ import annotations

from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "llmops.endpoints"
    label = "endpoints"
