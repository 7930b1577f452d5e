from __future__ import annotations

from django.urls import path

from llmops.knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.collection_create, name="collection-create"),
    path("<int:collection_id>/", views.collection, name="collection"),
    path("<int:collection_id>/status/", views.collection_status, name="collection-status"),
    path("<int:collection_id>/delete/", views.collection_delete, name="collection-delete"),
    path("<int:collection_id>/upload/", views.upload, name="upload"),
    path("<int:collection_id>/search/", views.search, name="search"),
    path("<int:collection_id>/indexes/new/", views.index_create, name="index-create"),
    path("indexes/<int:index_id>/<slug:action>/", views.index_action, name="index-action"),
    path("documents/<int:document_id>/", views.document, name="document"),
    path("documents/<int:document_id>/download/", views.document_download, name="document-download"),
    path("documents/<int:document_id>/delete/", views.document_delete, name="document-delete"),
    path("documents/<int:document_id>/replace/", views.document_replace, name="document-replace"),
]
