"""Reads for accounts. Everything that picks a workspace goes through here."""

from __future__ import annotations

from django.db.models import Case, F, IntegerField, Value, When
from django.db.models.functions import Lower
from django.http import Http404

from llmops.accounts.models import ROLE_RANK, ApiToken, Membership, Role, Workspace


def workspaces_for_user(*, user):
    if not getattr(user, "is_authenticated", False):
        return Workspace.objects.none()
    return Workspace.objects.filter(memberships__user=user).order_by(Lower("name"), "id")


def workspaces_with_role(*, user):
    """The user's workspaces, each with ``my_role`` (their role there)."""
    # annotate() after filter() on the same relation reuses its join: the role is the user's own.
    return workspaces_for_user(user=user).annotate(my_role=F("memberships__role"))


def workspace_get(*, user, workspace_id: int) -> Workspace:
    """A workspace the user is a member of; any other id is a 404, existing or not."""
    workspace = workspaces_for_user(user=user).filter(id=workspace_id).first()
    if workspace is None:
        raise Http404("No such workspace")
    return workspace


def membership_get(*, user, workspace: Workspace) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, workspace=workspace).first()


def memberships_for_workspace(*, workspace: Workspace):
    """Members, owners first, then by user name."""
    rank = Case(
        *(When(role=role.value, then=Value(-n)) for role, n in ROLE_RANK.items()),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(workspace=workspace).select_related("user").order_by(rank, "user__username")
    )


def workspace_for_request(*, user, session=None, requested_id: int | None = None) -> Workspace | None:
    """The workspace a request acts in: the one asked for, else the session's, else the one
    the user joined first (their own, for anyone who signed up and was invited later).

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
    if not getattr(user, "is_authenticated", False):
        return None
    first = (
        Membership.objects.filter(user=user).select_related("workspace").order_by("created_at", "id").first()
    )
    return first.workspace if first else None


def user_can(*, user, workspace: Workspace, role: str = Role.VIEWER) -> bool:
    membership = membership_get(user=user, workspace=workspace)
    return membership is not None and ROLE_RANK[Role(membership.role)] >= ROLE_RANK[Role(role)]


def api_tokens_for_user(*, user):
    return ApiToken.objects.filter(user=user)


def api_token_get(*, user, token_id: int) -> ApiToken:
    """One of the user's own tokens; anyone else's is a 404."""
    token = api_tokens_for_user(user=user).filter(id=token_id).first()
    if token is None:
        raise Http404("No such token")
    return token
