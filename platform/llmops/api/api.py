"""The REST API at /api/v1/: one NinjaAPI, one router per app."""

from __future__ import annotations

from ninja import NinjaAPI

from llmops.accounts.api import router as accounts_router
from llmops.accounts.auth import API_AUTH
from llmops.builder.api import router as builder_router
from llmops.catalog.api import router as catalog_router
from llmops.endpoints.api import router as endpoints_router
from llmops.knowledge.api import router as knowledge_router
from llmops.runs.api import router as runs_router

api = NinjaAPI(
    title="LLMOps platform API",
    version="1",
    description="Everything the web UI does, as JSON. Authenticate with "
    "`Authorization: Bearer <personal access token>` (Settings → API tokens).",
    auth=API_AUTH,
    urls_namespace="api-v1",
)

api.add_router("/", accounts_router)
api.add_router("/", builder_router)
api.add_router("/", runs_router)
api.add_router("/", knowledge_router)
api.add_router("/", catalog_router)
api.add_router("/", endpoints_router)
