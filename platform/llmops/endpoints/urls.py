from __future__ import annotations

from django.urls import path

from llmops.endpoints import views

app_name = "endpoints"
urlpatterns = [
    path("", views.index, name="index"),
]
