from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from llmops.accounts.selectors import workspace_for_request


class WorkspaceMiddleware:
    """Sets ``request.workspace``: the workspace the signed-in user is acting in (or None)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.workspace = SimpleLazyObject(
            lambda: workspace_for_request(user=request.user, session=request.session)
        )
        return self.get_response(request)
