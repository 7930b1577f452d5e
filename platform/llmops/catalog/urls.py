from __future__ import annotations

from django.urls import path

from llmops.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.index, name="index"),
    path("register/", views.model_register, name="model-register"),
    path("<int:model_id>/delete/", views.model_delete, name="model-delete"),
    path("datasets/upload/", views.dataset_upload, name="dataset-upload"),
    path("datasets/sample/", views.dataset_sample, name="dataset-sample"),
    path("datasets/from-collection/", views.dataset_from_collection, name="dataset-from-collection"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/delete/", views.dataset_delete, name="dataset-delete"),
]
