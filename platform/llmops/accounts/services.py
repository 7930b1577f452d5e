"""Writes for accounts: workspaces, memberships, tokens.

Services that act for someone take ``actor`` and check their role themselves, so a page and
an API handler calling them cannot forget the check. Bad input raises ``ValidationError``
with a message meant for the person who typed it.
"""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from llmops.accounts.models import ApiToken, Membership, Role, Workspace
from llmops.accounts.permissions import require_workspace_role
from llmops.accounts.selectors import workspace_get

TOKEN_PREFIX = "llmops_"  # noqa: S105 - a public marker, not a secret
NAME_MAX = 100


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_create(marker: str) -> tuple[str, str]:
    """A new random secret starting with ``marker``, and its public prefix (marker + 6 chars)."""
    secret = marker + secrets.token_urlsafe(32)
    return secret, secret[: len(marker) + 6]


def _clean_name(name: str, *, what: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError(f"Give the {what} a name.")
    if len(name) > NAME_MAX:
        raise ValidationError(f"A {what} name has at most {NAME_MAX} characters.")
    return name


def _clean_role(role: str) -> Role:
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}: choose {', '.join(Role.values)}.")
    return Role(role)


# --- workspaces -------------------------------------------------------------------------------


@transaction.atomic
def workspace_create(*, name: str, owner) -> Workspace:
    name = _clean_name(name, what="workspace")
    base = slugify(name)[:80] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    workspace = Workspace.objects.create(name=name, slug=slug)
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    return workspace


def workspace_switch(*, user, session, workspace_id: int) -> Workspace:
    """Make a workspace the current one for this browser session (404 if not a member)."""
    workspace = workspace_get(user=user, workspace_id=workspace_id)
    session["workspace_id"] = workspace.id
    return workspace


# --- memberships ------------------------------------------------------------------------------


def membership_set(*, workspace: Workspace, user, role: str) -> Membership:
    """Low-level: no permission check (seeding, tests, admin). Pages use the services below."""
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": _clean_role(role)}
    )
    return membership


@transaction.atomic
def membership_add(*, actor, workspace: Workspace, username: str, role: str) -> Membership:
    """An owner adds an existing user to the workspace."""
    require_workspace_role(user=actor, workspace=workspace, role=Role.OWNER)
    role = _clean_role(role)
    username = (username or "").strip()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError(f"There is no user named {username!r}." if username else "Enter a user name.")
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise ValidationError(f"{user.username} is already a member; change their role in the list.")
    return Membership.objects.create(workspace=workspace, user=user, role=role)


def _membership_for_owner(*, actor, workspace: Workspace, membership_id: int) -> tuple[Membership, int]:
    """The membership to change and the workspace's number of owners (checked by an owner)."""
    require_workspace_role(user=actor, workspace=workspace, role=Role.OWNER)
    # Lock the owner rows so two owners demoting each other at once cannot leave none.
    owners = Membership.objects.select_for_update().filter(workspace=workspace, role=Role.OWNER)
    owner_count = len(owners)
    membership = Membership.objects.filter(workspace=workspace, id=membership_id).first()
    if membership is None:
        raise Http404("No such member")
    return membership, owner_count


@transaction.atomic
def membership_change_role(*, actor, workspace: Workspace, membership_id: int, role: str) -> Membership:
    role = _clean_role(role)
    membership, owners = _membership_for_owner(actor=actor, workspace=workspace, membership_id=membership_id)
    if membership.role == Role.OWNER and role != Role.OWNER and owners <= 1:
        raise ValidationError("A workspace needs at least one owner: make someone else owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, actor, workspace: Workspace, membership_id: int) -> None:
    membership, owners = _membership_for_owner(actor=actor, workspace=workspace, membership_id=membership_id)
    if membership.role == Role.OWNER and owners <= 1:
        raise ValidationError("A workspace needs at least one owner: make someone else owner first.")
    membership.delete()


# --- users ------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "", workspace_name: str = ""):
    """A user with a personal workspace they own."""
    user = get_user_model().objects.create_user(username=username, password=password, email=email)
    workspace_create(name=workspace_name or f"{username}'s workspace", owner=user)
    return user


# --- personal access tokens -------------------------------------------------------------------


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and the secret, which is never stored and cannot be shown again."""
    name = _clean_name(name, what="token")
    secret, prefix = secret_create(TOKEN_PREFIX)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        digest=token_digest(secret),
    )
    return token, secret


def api_token_revoke(*, user, token_id: int) -> bool:
    """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
    updated = ApiToken.objects.filter(id=token_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return bool(updated)


def api_token_authenticate(*, secret: str):
    """The user owning an active token with this secret, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Writing on every request would serialise API traffic on one row; a minute is precise enough.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
