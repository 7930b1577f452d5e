"""Authentication for the REST API: Bearer personal access tokens, or the browser session."""

from __future__ import annotations

from ninja.security import HttpBearer, SessionAuth

from llmops.accounts.services import api_token_authenticate


class BearerTokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        user = api_token_authenticate(secret=token)
        if user is not None:
            request.user = user
        return user


# Session auth with Django's CSRF check, for the browser's own fetch/htmx calls.
API_AUTH = [BearerTokenAuth(), SessionAuth()]
