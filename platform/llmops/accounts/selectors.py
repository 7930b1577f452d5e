"""Reads for accounts. Everything that picks a workspace goes through here."""

from __future__ import annotations

from django.http import Http404

from llmops.accounts.models import ROLE_RANK, ApiToken, Membership, Role, Workspace


def workspaces_for_user(*, user):
    if not getattr(user, "is_authenticated", False):
        return Workspace.objects.none()
    return Workspace.objects.filter(memberships__user=user).order_by("name", "id")


def membership_get(*, user, workspace: Workspace) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, workspace=workspace).first()


def workspace_for_request(*, user, session=None, requested_id: int | None = None) -> Workspace | None:
    """The workspace a request acts in: the one asked for, else the session's, else the first.

    A workspace the user is not a member of is treated as if it did not exist (404).
    """
    qs = workspaces_for_user(user=user)
    if requested_id is not None:
        workspace = qs.filter(id=requested_id).first()
        if workspace is None:
            raise Http404("No such workspace")
        return workspace
    session_id = session.get("workspace_id") if session is not None else None
    if session_id is not None:
        workspace = qs.filter(id=session_id).first()
        if workspace is not None:
            return workspace
    return qs.first()


def user_can(*, user, workspace: Workspace, role: str = Role.VIEWER) -> bool:
    membership = membership_get(user=user, workspace=workspace)
    return membership is not None and ROLE_RANK[Role(membership.role)] >= ROLE_RANK[Role(role)]


def api_tokens_for_user(*, user):
    return ApiToken.objects.filter(user=user)
