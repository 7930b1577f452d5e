from __future__ import annotations

from django.urls import path

from llmops.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.index, name="index"),
]
