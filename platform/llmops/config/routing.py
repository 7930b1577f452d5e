"""Websocket routes; each app adds its own patterns here."""

from __future__ import annotations

websocket_urlpatterns: list = []

from llmops.core.routing import websocket_urlpatterns as core_patterns  # noqa: E402

websocket_urlpatterns += core_patterns

from llmops.runs.routing import websocket_urlpatterns as runs_patterns  # noqa: E402

websocket_urlpatterns += runs_patterns
