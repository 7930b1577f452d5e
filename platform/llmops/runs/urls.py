from __future__ import annotations

from django.urls import path

from llmops.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.index, name="index"),
]
