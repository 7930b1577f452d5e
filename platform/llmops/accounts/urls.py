from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from llmops.accounts import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/tokens/", views.tokens, name="settings-tokens"),
    path("settings/tokens/new/", views.token_create, name="token-create"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("workspaces/", views.workspaces, name="workspaces"),
    path("workspaces/new/", views.workspace_create, name="workspace-create"),
    path("workspaces/switch/", views.workspace_switch, name="workspace-switch"),
    path("workspaces/<int:workspace_id>/", views.workspace_detail, name="workspace-detail"),
    path("workspaces/<int:workspace_id>/members/", views.member_add, name="member-add"),
    path(
        "workspaces/<int:workspace_id>/members/<int:membership_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "workspaces/<int:workspace_id>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
]
