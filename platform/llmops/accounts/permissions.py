"""Role checks for pages and API handlers of every app.

A non-member gets 404 (the workspace "does not exist" for them, as everywhere else); a member
whose role is too low gets 403. ``RoleRequired`` is both Django's ``PermissionDenied`` (pages
answer 403) and django-ninja's ``HttpError`` (the API answers 403 JSON), so the same check
serves views and API handlers.
"""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import Http404
from ninja.errors import HttpError

from llmops.accounts.models import ROLE_RANK, Membership, Role, Workspace
from llmops.accounts.selectors import membership_get


class RoleRequired(HttpError, PermissionDenied):
    def __init__(self, role: str):
        super().__init__(403, f"This needs the {Role(role).label.lower()} role in this workspace.")
        self.role = role


def require_workspace_role(*, user, workspace: Workspace | None, role: str = Role.VIEWER) -> Membership:
    """The user's membership of ``workspace`` if their role is at least ``role``.

    Raises Http404 for a missing workspace or a non-member, RoleRequired (403) for a low role.
    """
    membership = membership_get(user=user, workspace=workspace) if workspace is not None else None
    if membership is None:
        raise Http404("No such workspace")
    if ROLE_RANK[Role(membership.role)] < ROLE_RANK[Role(role)]:
        raise RoleRequired(role)
    return membership


def role_required(role: str):
    """Decorator for views and API handlers acting on ``request.workspace``.

    Put it under ``login_required`` on pages; API handlers are already authenticated. The
    membership is left on ``request.membership`` for the view.
    """

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            request.membership = require_workspace_role(
                user=request.user, workspace=request.workspace or None, role=role
            )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
