from __future__ import annotations

from django.urls import path

from llmops.builder import views

app_name = "builder"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    path("import/", views.import_, name="import"),
    path("templates/<slug:slug>/", views.from_template, name="from_template"),
    path("<int:pipeline_id>/", views.detail, name="detail"),
    path("<int:pipeline_id>/versions/", views.versions, name="versions"),
    path("<int:pipeline_id>/versions/<int:number>/restore/", views.restore, name="restore"),
    path("<int:pipeline_id>/duplicate/", views.duplicate, name="duplicate"),
    path("<int:pipeline_id>/export/", views.export, name="export"),
    path("<int:pipeline_id>/delete/", views.delete, name="delete"),
    path("<int:pipeline_id>/nodes/form", views.node_form, name="node_form"),
]
