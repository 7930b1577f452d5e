from __future__ import annotations

from llmops.accounts.selectors import workspaces_for_user


def workspace(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    current = getattr(request, "workspace", None)
    return {
        "current_workspace": current if current else None,
        "user_workspaces": workspaces_for_user(user=user),
    }
