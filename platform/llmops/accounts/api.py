"""Accounts over REST: who am I, my personal access tokens, my workspaces."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

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

router = Router(tags=["Accounts"])


class WorkspaceOut(Schema):
    id: int
    name: str
    slug: str
    role: str = Field(description="Your role here: owner, editor or viewer.")


class MemberOut(Schema):
    id: int
    username: str
    role: str
    since: datetime


class WorkspaceDetailOut(WorkspaceOut):
    members: list[MemberOut]


class MeOut(Schema):
    id: int
    username: str
    email: str
    workspaces: list[WorkspaceOut]


class TokenOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The secret. Shown in this response only; store it now.")


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100, description="What the token is for.")


class WorkspaceIn(Schema):
    name: str = Field(min_length=1, max_length=100)


class MemberIn(Schema):
    username: str = Field(description="An existing user's name.")
    role: Role = Role.EDITOR


class RoleIn(Schema):
    role: Role


class ErrorOut(Schema):
    detail: str


def _member_out(membership) -> MemberOut:
    return MemberOut(
        id=membership.id, username=membership.user.username, role=membership.role, since=membership.created_at
    )


def _validation_to_422(exc: ValidationError) -> HttpError:
    return HttpError(422, " ".join(exc.messages))


def _workspace_out(workspace, role: str) -> WorkspaceOut:
    return WorkspaceOut(id=workspace.id, name=workspace.name, slug=workspace.slug, role=role)


def _token_out(token) -> dict:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "active": token.is_active,
    }


@router.get("/me", response=MeOut, summary="The authenticated user and their workspaces")
def me(request):
    user = request.auth
    workspaces = [_workspace_out(w, w.my_role) for w in workspaces_with_role(user=user)]
    return MeOut(id=user.id, username=user.username, email=user.email, workspaces=workspaces)


@router.get("/workspaces", response=list[WorkspaceOut], summary="Your workspaces, with your role in each")
def workspace_list(request):
    return [_workspace_out(w, w.my_role) for w in workspaces_with_role(user=request.auth)]


@router.get(
    "/workspaces/{workspace_id}",
    response={200: WorkspaceDetailOut, 404: ErrorOut},
    summary="One of your workspaces and its members",
)
def workspace_detail(request, workspace_id: int):
    workspace = workspace_get(user=request.auth, workspace_id=workspace_id)
    membership = require_workspace_role(user=request.auth, workspace=workspace)
    members = [_member_out(m) for m in memberships_for_workspace(workspace=workspace)]
    return WorkspaceDetailOut(**_workspace_out(workspace, membership.role).model_dump(), members=members)


@router.post("/workspaces", response={201: WorkspaceOut, 422: ErrorOut}, summary="Create a workspace you own")
def workspace_create(request, payload: WorkspaceIn):
    try:
        workspace = services.workspace_create(name=payload.name, owner=request.auth)
    except ValidationError as exc:
        raise _validation_to_422(exc) from exc
    return Status(201, _workspace_out(workspace, Role.OWNER.value))


MEMBER_ERRORS = {403: ErrorOut, 404: ErrorOut, 422: ErrorOut}


@router.post(
    "/workspaces/{workspace_id}/members",
    response={201: MemberOut, **MEMBER_ERRORS},
    summary="Add an existing user to the workspace (owners only)",
)
def member_add(request, workspace_id: int, payload: MemberIn):
    workspace = workspace_get(user=request.auth, workspace_id=workspace_id)
    try:
        membership = services.membership_add(
            actor=request.auth, workspace=workspace, username=payload.username, role=payload.role
        )
    except ValidationError as exc:
        raise _validation_to_422(exc) from exc
    return Status(201, _member_out(membership))


@router.patch(
    "/workspaces/{workspace_id}/members/{member_id}",
    response={200: MemberOut, **MEMBER_ERRORS},
    summary="Change a member's role (owners only; a workspace keeps at least one owner)",
)
def member_role(request, workspace_id: int, member_id: int, payload: RoleIn):
    workspace = workspace_get(user=request.auth, workspace_id=workspace_id)
    try:
        membership = services.membership_change_role(
            actor=request.auth, workspace=workspace, membership_id=member_id, role=payload.role
        )
    except ValidationError as exc:
        raise _validation_to_422(exc) from exc
    return Status(200, _member_out(membership))


@router.delete(
    "/workspaces/{workspace_id}/members/{member_id}",
    response={204: None, **MEMBER_ERRORS},
    summary="Remove a member (owners only; a workspace keeps at least one owner)",
)
def member_remove(request, workspace_id: int, member_id: int):
    workspace = workspace_get(user=request.auth, workspace_id=workspace_id)
    try:
        services.membership_remove(actor=request.auth, workspace=workspace, membership_id=member_id)
    except ValidationError as exc:
        raise _validation_to_422(exc) from exc
    return Status(204, None)


@router.get("/tokens", response=list[TokenOut], summary="Your personal access tokens (never their secrets)")
def token_list(request):
    return [_token_out(t) for t in api_tokens_for_user(user=request.auth)]


@router.post(
    "/tokens",
    response={201: TokenCreatedOut, 422: ErrorOut},
    summary="Create a personal access token; the secret is in this response only",
)
def token_create(request, payload: TokenIn):
    try:
        token, secret = services.api_token_create(user=request.auth, name=payload.name)
    except ValidationError as exc:
        raise _validation_to_422(exc) from exc
    return Status(201, {**_token_out(token), "token": secret})


@router.delete(
    "/tokens/{token_id}",
    response={204: None, 404: ErrorOut},
    summary="Revoke a token: it stops working at once (revoking twice is harmless)",
)
def token_revoke(request, token_id: int):
    token = api_token_get(user=request.auth, token_id=token_id)
    services.api_token_revoke(user=request.auth, token_id=token.id)
    return Status(204, None)
