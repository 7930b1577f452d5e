from __future__ import annotations

from django.urls import path

from llmops.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.index, name="index"),
    path("workers/", views.workers, name="workers"),
    path("<int:run_id>/", views.detail, name="detail"),
    path("<int:run_id>/cancel/", views.cancel, name="cancel"),
    path("<int:run_id>/reports/", views.run_reports, name="reports"),
    path("<int:run_id>/nodes/<str:node_id>/retry/", views.retry, name="retry"),
    path("artifacts/<int:artifact_id>/download/", views.artifact_download, name="artifact-download"),
]
