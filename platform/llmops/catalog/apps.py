from __future__ import annotations

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Base models and training/evaluation datasets."""

    name = "llmops.catalog"
    label = "catalog"
