from __future__ import annotations

from ninja import Router, Schema

from llmops.accounts.selectors import membership_get, workspaces_for_user

router = Router(tags=["Accounts"])


class WorkspaceOut(Schema):
    id: int
    name: str
    slug: str
    role: str


class MeOut(Schema):
    id: int
    username: str
    email: str
    workspaces: list[WorkspaceOut]


@router.get("/me", response=MeOut, summary="The authenticated user and their workspaces")
def me(request):
    user = request.auth
    workspaces = [
        WorkspaceOut(id=w.id, name=w.name, slug=w.slug, role=membership_get(user=user, workspace=w).role)
        for w in workspaces_for_user(user=user)
    ]
    return MeOut(id=user.id, username=user.username, email=user.email, workspaces=workspaces)
