from __future__ import annotations

from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "llmops.endpoints"
    label = "endpoints"

    def ready(self) -> None:
        from llmops.endpoints import signals

        signals.connect()
