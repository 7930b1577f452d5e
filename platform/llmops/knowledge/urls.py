from __future__ import annotations

from django.urls import path

from llmops.knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("", views.index, name="index"),
]
