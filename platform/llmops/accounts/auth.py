"""Authentication for the REST API: Bearer personal access tokens, or the browser session."""

from __future__ import annotations

from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuth

from llmops.accounts.services import api_token_authenticate


class BearerTokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        user = api_token_authenticate(secret=token)
        if user is None:
            # A presented but bad/revoked token is a 401 now; falling through to the session
            # would let a revoked token keep "working" in a browser that is signed in.
            raise AuthenticationError()
        request.user = user
        return user


# Session auth with Django's CSRF check, for the browser's own fetch/htmx calls.
API_AUTH = [BearerTokenAuth(), SessionAuth()]
