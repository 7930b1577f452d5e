"""Settings: personal access tokens, workspaces and their members.

htmx requests get the changed card (a partial of the same template); plain form posts are
redirected back to the page, so every URL also works without JavaScript.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from llmops.accounts import services
from llmops.accounts.models import Role
from llmops.accounts.permissions import require_workspace_role
from llmops.accounts.selectors import (
    api_token_get,
    api_tokens_for_user,
    memberships_for_workspace,
    workspace_get,
    workspaces_with_role,
)

SETTINGS = "accounts/settings.html"
WORKSPACE = "accounts/workspace.html"


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _members_context(request, workspace) -> dict:
    membership = require_workspace_role(user=request.user, workspace=workspace, role=Role.VIEWER)
    members = list(memberships_for_workspace(workspace=workspace))
    return {
        "workspace": workspace,
        "my_membership": membership,
        "is_owner": membership.role == Role.OWNER,
        "members": members,
        # The last owner cannot leave or step down: the page hides what would be refused.
        "sole_owner": sum(m.role == Role.OWNER for m in members) == 1,
        "roles": Role.choices,
    }


def _settings_context(request, **extra) -> dict:
    current = request.workspace or None
    context = {
        "section": "settings",
        "title": "Settings",
        "tokens": api_tokens_for_user(user=request.user),
        "workspaces": workspaces_with_role(user=request.user),
        "current_workspace": current,
        "roles": Role.choices,
    }
    if current is not None:
        context.update(_members_context(request, current))
    context.update(extra)
    return context


def _page_or_partial(request, template: str, partial: str, context: dict, status: int = 200):
    name = f"{template}#{partial}" if request.htmx else template
    return render(request, name, context, status=status)


# --- settings page and tokens -------------------------------------------------------------------


@require_GET
@login_required
def settings_page(request):
    return render(request, SETTINGS, _settings_context(request))


@require_GET
@login_required
def tokens(request):
    return _page_or_partial(request, SETTINGS, "tokens", _settings_context(request))


@require_POST
@login_required
def token_create(request):
    try:
        token, secret = services.api_token_create(user=request.user, name=request.POST.get("name", ""))
    except ValidationError as exc:
        context = _settings_context(
            request, token_error=_error_text(exc), token_name=request.POST.get("name", "")
        )
        return _page_or_partial(request, SETTINGS, "tokens", context, status=200 if request.htmx else 400)
    # The secret is rendered into this one response and never stored: no redirect, no flash.
    context = _settings_context(request, new_token=token, new_secret=secret)
    response = _page_or_partial(request, SETTINGS, "tokens", context)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def token_revoke(request, token_id: int):
    token = api_token_get(user=request.user, token_id=token_id)
    services.api_token_revoke(user=request.user, token_id=token.id)
    if request.htmx:
        return render(request, f"{SETTINGS}#tokens", _settings_context(request))
    messages.success(request, f"Token “{token.name}” revoked: it no longer works.")
    return redirect("settings")


# --- workspaces ---------------------------------------------------------------------------------


@require_GET
@login_required
def workspaces(request):
    return _page_or_partial(request, SETTINGS, "workspaces", _settings_context(request))


@require_POST
@login_required
def workspace_create(request):
    try:
        workspace = services.workspace_create(name=request.POST.get("name", ""), owner=request.user)
    except ValidationError as exc:
        context = _settings_context(
            request, workspace_error=_error_text(exc), workspace_name=request.POST.get("name", "")
        )
        return _page_or_partial(request, SETTINGS, "workspaces", context, status=200 if request.htmx else 400)
    services.workspace_switch(user=request.user, session=request.session, workspace_id=workspace.id)
    messages.success(request, f"Workspace “{workspace.name}” created; you are working in it now.")
    return _redirect(request, reverse("settings"))


@require_POST
@login_required
def workspace_switch(request):
    try:
        workspace_id = int(request.POST.get("workspace", ""))
    except ValueError:
        workspace_id = 0  # not a member of "no id": the same 404 as any foreign id
    workspace = services.workspace_switch(
        user=request.user, session=request.session, workspace_id=workspace_id
    )
    messages.success(request, f"You are now working in “{workspace.name}”.")
    return _redirect(request, _safe_next(request) or reverse("home"))


def _safe_next(request) -> str | None:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return None


def _redirect(request, url: str):
    # htmx follows a 302 with an XHR and swaps the result in; HX-Redirect loads the page instead.
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


# --- members ------------------------------------------------------------------------------------


@require_GET
@login_required
def workspace_detail(request, workspace_id: int):
    workspace = workspace_get(user=request.user, workspace_id=workspace_id)
    context = {"section": "settings", "title": workspace.name, **_members_context(request, workspace)}
    return _page_or_partial(request, WORKSPACE, "members", context)


def _members_response(request, workspace, *, error: str = "", notice: str = "", **extra):
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("workspace-detail", workspace_id=workspace.id)
    context = {
        **_members_context(request, workspace),
        "member_error": error,
        "member_notice": notice,
        **extra,
    }
    return render(request, f"{WORKSPACE}#members", context)


@require_POST
@login_required
def member_add(request, workspace_id: int):
    workspace = workspace_get(user=request.user, workspace_id=workspace_id)
    username = request.POST.get("username", "")
    try:
        membership = services.membership_add(
            actor=request.user, workspace=workspace, username=username, role=request.POST.get("role", "")
        )
    except ValidationError as exc:
        return _members_response(request, workspace, error=_error_text(exc), member_username=username)
    return _members_response(
        request,
        workspace,
        notice=f"{membership.user.username} added as {membership.get_role_display().lower()}.",
    )


@require_POST
@login_required
def member_role(request, workspace_id: int, membership_id: int):
    workspace = workspace_get(user=request.user, workspace_id=workspace_id)
    try:
        membership = services.membership_change_role(
            actor=request.user,
            workspace=workspace,
            membership_id=membership_id,
            role=request.POST.get("role", ""),
        )
    except ValidationError as exc:
        return _members_response(request, workspace, error=_error_text(exc))
    return _members_response(
        request,
        workspace,
        notice=f"{membership.user.username} is now {membership.get_role_display().lower()}.",
    )


@require_POST
@login_required
def member_remove(request, workspace_id: int, membership_id: int):
    workspace = workspace_get(user=request.user, workspace_id=workspace_id)
    try:
        services.membership_remove(actor=request.user, workspace=workspace, membership_id=membership_id)
    except ValidationError as exc:
        return _members_response(request, workspace, error=_error_text(exc))
    if not workspaces_with_role(user=request.user).filter(id=workspace.id).exists():
        # An owner removed themselves: the workspace is gone for them, so is its page.
        messages.success(request, f"You left “{workspace.name}”.")
        return _redirect(request, reverse("settings"))
    return _members_response(request, workspace, notice="Member removed.")
