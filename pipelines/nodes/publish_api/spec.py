"""publish.api: publish a service as a REST and OpenAI-compatible endpoint with keys."""

from __future__ import annotations

from pipelines.params import Params, param
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"


class PublishApiParams(Params):
    slug: str | None = param(
        None,
        title="Address",
        description=(
            "The endpoint's name in its URL, e.g. “support-bot” gives /api/v1/endpoints/support-bot/query. "
            "Lowercase letters, digits and dashes. Empty makes one from the pipeline's name."
        ),
        pattern=SLUG_PATTERN,
    )
    rate_limit_per_minute: int = param(
        60,
        title="Requests per minute per key",
        description=(
            "Each API key may make at most this many requests a minute; more get "
            "“429 Too Many Requests”."
        ),
        ge=1,
        le=100_000,
    )
    monthly_quota: int = param(
        0,
        title="Monthly requests per key",
        description="Each API key may make at most this many requests a month. 0 = no limit.",
        ge=0,
        le=1_000_000_000,
        advanced=True,
    )
    description: str = param(
        "",
        title="Description",
        description="What the endpoint does, shown to the developers who use it and in its API docs.",
        widget="textarea",
        max_length=1000,
    )


SPEC = NodeSpec(
    kind="publish.api",
    label="Publish API",
    category="Serving",
    description="Publishes the service as an API endpoint (REST and OpenAI-compatible) with keys.",
    help=(
        "Turns the service into an API other programs can call: a /query URL and an "
        "OpenAI-compatible /v1/chat/completions, protected by API keys you create on the "
        "endpoint's page, with a per-key rate limit. Running the pipeline again switches the "
        "endpoint to the new version at once; you can roll back."
    ),
    icon="🚀",
    queue="cpu",
    params=PublishApiParams,
    inputs=(Port("service", ArtifactType.SERVICE, "Service"),),
    outputs=(Port("endpoint", ArtifactType.ENDPOINT, "Endpoint"),),
    implementation="pipelines.nodes.publish_api.run:run",
)
