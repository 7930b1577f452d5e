from __future__ import annotations

from django.urls import path

from llmops.builder import views

app_name = "builder"
urlpatterns = [
    path("", views.index, name="index"),
]
