"""REST API for endpoints (mounted at /api/v1/).

Two audiences, two kinds of credentials:
- applications call ``POST /endpoints/{slug}/query`` (and send feedback) with an endpoint
  key: ``Authorization: Bearer llmk_...``;
- signed-in users and personal access tokens manage endpoints, keys and hosted models.

The query handler reads its body itself (the key is checked before the body is looked at,
and errors name the field); its documented schema is attached with ``openapi_extra``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from ninja import Router, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import Field

from llmops.accounts.selectors import workspace_for_request
from llmops.endpoints import access, handlers, selectors, services
from llmops.endpoints.access import AccessError
from llmops.endpoints.models import Endpoint, KeyScope
from llmops.endpoints.services import EndpointError
from llmops.runs.selectors import run_get
from pipelines.serving.protocol import QueryIn

router = Router(tags=["Endpoints"])


class SourceOut(Schema):
    document: str
    chunk: int | None = None
    score: float
    text: str


class UsageOut(Schema):
    prompt_tokens: int
    completion_tokens: int


class QueryOut(Schema):
    id: str
    answer: str
    sources: list[SourceOut]
    usage: UsageOut
    latency_ms: float


class ErrorOut(Schema):
    detail: str
    field: str | None = None


class EndpointKey(HttpBearer):
    """``Authorization: Bearer llmk_...``: an endpoint key. Declared for the OpenAPI document;
    the check itself (key, endpoint, limits, logging) is the handler's, so it always passes here."""

    def __call__(self, request: HttpRequest):
        return "checked-by-the-handler"

    def authenticate(self, request: HttpRequest, token: str):  # pragma: no cover - __call__ decides
        return token


ENDPOINT_KEY = EndpointKey()

QUERY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": QueryIn.model_json_schema()}},
    },
}


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _fail(error: EndpointError) -> HttpError:
    return HttpError(error.status, error.message)


# --- asking (endpoint keys) -------------------------------------------------------------------------


@router.post(
    "/endpoints/{slug}/query",
    auth=ENDPOINT_KEY,
    openapi_extra=QUERY_DOC,
    response={
        200: QueryOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
        503: ErrorOut,
        504: ErrorOut,
    },
    summary="Ask the endpoint a question (with an endpoint key)",
)
async def endpoint_query(request: HttpRequest, slug: str):
    """`Authorization: Bearer <endpoint key>`. With `"stream": true` the answer comes as
    server-sent events: `{"type": "delta", "text"}`... then `{"type": "done", ...}` and `[DONE]`."""
    return await handlers.query(request, slug)


class FeedbackIn(Schema):
    rating: int = Field(description="1 (good) or -1 (bad)")
    request_id: str = Field(
        "", max_length=40, description="The `id` of a recent answer: question and answer are filled in."
    )
    question: str = Field("", max_length=services.MAX_FEEDBACK_CHARS)
    answer: str = Field("", max_length=services.MAX_FEEDBACK_CHARS)
    sources: list[dict[str, Any]] | None = None
    comment: str = Field("", max_length=services.MAX_FEEDBACK_CHARS)


@router.post(
    "/endpoints/{slug}/feedback",
    auth=ENDPOINT_KEY,
    response={201: dict, 401: ErrorOut, 404: ErrorOut},
    summary="Rate an answer (with an endpoint key)",
)
def endpoint_feedback(request: HttpRequest, slug: str, payload: FeedbackIn):
    try:
        grant = access.authorize_key(
            authorization=request.headers.get("Authorization"), slug=slug, count=False
        )
        endpoint = Endpoint.objects.get(pk=grant.endpoint_id)
        item = services.feedback_create(
            endpoint=endpoint, key_id=grant.key_id, origin="api", **payload.dict()
        )
    except AccessError as error:
        return handlers.rest_error(error)
    except EndpointError as error:
        return JsonResponse({"detail": error.message, "field": error.field}, status=error.status)
    return 201, {"id": item.pk, "rating": item.rating}


# --- managing (signed-in users, personal tokens) ----------------------------------------------------


@router.get("/endpoints", summary="Endpoints of your workspaces")
def endpoint_list(request: HttpRequest, workspace: int | None = None):
    ws = workspace_for_request(user=request.auth, requested_id=workspace) if workspace else None
    return [
        selectors.endpoint_dict(e, base_url=_base(request))
        for e in selectors.endpoint_list(user=request.auth, workspace=ws)
    ]


class PublishIn(Schema):
    run: int = Field(description="A finished run with a Q&A service step.")
    slug: str | None = Field(
        None, max_length=50, description="The endpoint's address; default: from the pipeline."
    )


@router.post("/endpoints", response={201: list[dict]}, summary="Publish a finished run")
def endpoint_publish(request: HttpRequest, payload: PublishIn):
    run = run_get(user=request.auth, run_id=payload.run)
    try:
        publications = services.endpoints_publish_run(user=request.auth, run=run, slug=payload.slug)
    except EndpointError as error:
        raise _fail(error) from error
    return 201, [
        {**selectors.endpoint_dict(p.endpoint, base_url=_base(request)), "created": p.created}
        for p in publications
    ]


@router.get("/endpoints/{slug}", summary="One endpoint with its versions")
def endpoint_detail(request: HttpRequest, slug: str):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    versions = [selectors.version_dict(v) for v in selectors.endpoint_versions(endpoint=endpoint)]
    return {**selectors.endpoint_dict(endpoint, base_url=_base(request)), "versions": versions}


class EndpointPatch(Schema):
    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=1000)
    rate_limit_per_minute: int | None = None
    monthly_quota: int | None = None
    provider: int | None = Field(
        None, description="A hosted model's id; 0 switches back to the service's model."
    )


@router.patch("/endpoints/{slug}", summary="Change an endpoint's settings")
def endpoint_patch(request: HttpRequest, slug: str, payload: EndpointPatch):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    data = payload.dict(exclude_unset=True)
    provider = data.pop("provider", False)
    try:
        services.endpoint_update(
            user=request.auth,
            endpoint=endpoint,
            provider_id=(provider or None) if provider is not False else False,
            **data,
        )
    except EndpointError as error:
        raise _fail(error) from error
    return selectors.endpoint_dict(endpoint, base_url=_base(request))


class RollbackIn(Schema):
    version: int


@router.post("/endpoints/{slug}/rollback", summary="Answer with an earlier version again")
def endpoint_rollback(request: HttpRequest, slug: str, payload: RollbackIn):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    try:
        services.endpoint_rollback(user=request.auth, endpoint=endpoint, number=payload.version)
    except EndpointError as error:
        raise _fail(error) from error
    return selectors.endpoint_dict(endpoint, base_url=_base(request))


@router.post("/endpoints/{slug}/unpublish", summary="Stop answering (404 for every caller)")
def endpoint_unpublish(request: HttpRequest, slug: str):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    services.endpoint_set_published(user=request.auth, endpoint=endpoint, published=False)
    return selectors.endpoint_dict(endpoint, base_url=_base(request))


@router.post("/endpoints/{slug}/publish", summary="Answer again with the active version")
def endpoint_republish(request: HttpRequest, slug: str):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    try:
        services.endpoint_set_published(user=request.auth, endpoint=endpoint, published=True)
    except EndpointError as error:
        raise _fail(error) from error
    return selectors.endpoint_dict(endpoint, base_url=_base(request))


@router.delete("/endpoints/{slug}", response={204: None}, summary="Delete an endpoint, its keys and logs")
def endpoint_delete(request: HttpRequest, slug: str):
    services.endpoint_delete(user=request.auth, endpoint=selectors.endpoint_get(user=request.auth, slug=slug))
    return 204, None


@router.get("/endpoints/{slug}/usage", summary="Requests, errors and latency per minute")
def endpoint_usage(request: HttpRequest, slug: str, minutes: int = 60):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    return selectors.usage_series(endpoint=endpoint, minutes=minutes)


@router.get("/endpoints/{slug}/feedback.jsonl", summary="Feedback as a JSONL dataset (instruction format)")
def endpoint_feedback_export(request: HttpRequest, slug: str, only: str = "all"):
    endpoint = selectors.endpoint_get(user=request.auth, slug=slug)
    response = StreamingHttpResponse(
        selectors.feedback_jsonl(endpoint=endpoint, only=only), content_type="application/x-ndjson"
    )
    response["Content-Disposition"] = f'attachment; filename="{endpoint.slug}-feedback.jsonl"'
    return response


# --- keys ---------------------------------------------------------------------------------------------


class KeyIn(Schema):
    endpoint: str | None = Field(None, max_length=50, description='The endpoint\'s slug (scope "endpoint").')
    name: str = Field(max_length=100)
    scope: str = Field(KeyScope.ENDPOINT, description='"endpoint" or "workspace" (every endpoint of it).')
    workspace: int | None = Field(None, description="For workspace keys; default: your current workspace.")
    rate_limit_per_minute: int | None = None
    monthly_quota: int | None = None


@router.post("/keys", response={201: dict}, summary="Create an endpoint key (the secret is shown once)")
def key_create(request: HttpRequest, payload: KeyIn):
    endpoint = selectors.endpoint_get(user=request.auth, slug=payload.endpoint) if payload.endpoint else None
    if endpoint is not None:
        workspace = endpoint.workspace
    else:
        workspace = workspace_for_request(
            user=request.auth, session=getattr(request, "session", None), requested_id=payload.workspace
        )
    if workspace is None:
        raise HttpError(404, "No workspace")
    try:
        key, secret = services.key_create(
            user=request.auth,
            workspace=workspace,
            endpoint=endpoint,
            name=payload.name,
            scope=payload.scope,
            rate_limit_per_minute=payload.rate_limit_per_minute,
            monthly_quota=payload.monthly_quota,
        )
    except EndpointError as error:
        raise _fail(error) from error
    return 201, {**selectors.key_dict(key), "secret": secret}


@router.get("/keys", summary="Your workspaces' endpoint keys (never their secrets)")
def key_list(request: HttpRequest, endpoint: str | None = None):
    target = selectors.endpoint_get(user=request.auth, slug=endpoint) if endpoint else None
    return [selectors.key_dict(k) for k in selectors.key_list(user=request.auth, endpoint=target)]


@router.delete("/keys/{key_id}", response={204: None}, summary="Revoke a key (immediately)")
def key_revoke(request: HttpRequest, key_id: int):
    services.key_revoke(user=request.auth, key=selectors.key_get(user=request.auth, key_id=key_id))
    return 204, None


# --- hosted models -----------------------------------------------------------------------------------


class ProviderIn(Schema):
    name: str = Field(max_length=100)
    base_url: str = Field(max_length=500, description="e.g. https://api.openai.com/v1")
    model: str = Field(max_length=200)
    api_key: str = Field("", max_length=1000, description="Stored encrypted; never shown again.")
    workspace: int | None = None


@router.get("/providers", summary="Hosted (OpenAI-compatible) models")
def provider_list(request: HttpRequest):
    return [selectors.provider_dict(p) for p in selectors.provider_list(user=request.auth)]


@router.post("/providers", response={201: dict}, summary="Add a hosted model")
def provider_create(request: HttpRequest, payload: ProviderIn):
    workspace = workspace_for_request(
        user=request.auth, session=getattr(request, "session", None), requested_id=payload.workspace
    )
    try:
        provider = services.provider_create(
            user=request.auth,
            workspace=workspace,
            name=payload.name,
            base_url=payload.base_url,
            model=payload.model,
            api_key=payload.api_key,
        )
    except EndpointError as error:
        raise _fail(error) from error
    return 201, selectors.provider_dict(provider)


@router.delete("/providers/{provider_id}", response={204: None}, summary="Remove a hosted model")
def provider_delete(request: HttpRequest, provider_id: int):
    services.provider_delete(
        user=request.auth, provider=selectors.provider_get(user=request.auth, provider_id=provider_id)
    )
    return 204, None
