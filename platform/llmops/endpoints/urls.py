from __future__ import annotations

from django.urls import path

from llmops.endpoints import views

app_name = "endpoints"
urlpatterns = [
    path("", views.index, name="index"),
    path("publish/", views.publish, name="publish"),
    path("providers/", views.provider_create, name="provider-create"),
    path("providers/<int:provider_id>/delete/", views.provider_delete, name="provider-delete"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("<slug:slug>/", views.detail, name="detail"),
    path("<slug:slug>/playground/", views.playground, name="playground"),
    path("<slug:slug>/feedback/", views.feedback, name="feedback"),
    path("<slug:slug>/feedback.jsonl", views.feedback_export, name="feedback-export"),
    path("<slug:slug>/usage.json", views.usage, name="usage"),
    path("<slug:slug>/keys/", views.key_create, name="key-create"),
    path("<slug:slug>/rollback/", views.rollback, name="rollback"),
    path("<slug:slug>/published/", views.set_published, name="set-published"),
    path("<slug:slug>/settings/", views.settings_update, name="settings"),
    path("<slug:slug>/delete/", views.delete, name="delete"),
]
