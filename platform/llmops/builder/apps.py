from __future__ import annotations

from django.apps import AppConfig


class BuilderConfig(AppConfig):
    name = "llmops.builder"
    label = "builder"
