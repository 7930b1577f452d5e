"""publish.api on a worker: describe the endpoint to create. Nodes never touch Django, so
the Endpoint row itself is made on the web side when the run succeeds
(``llmops.endpoints.services.endpoint_publish_run``), from this artifact's metadata."""

from __future__ import annotations

from typing import Any

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.types import ArtifactType


def run(ctx, inputs: dict[str, Any], params) -> dict[str, ArtifactOut]:
    service = inputs["service"]
    if service.id is None and not service.key:
        raise NodeFailure("The service input is missing: run the Q&A service step again.")
    facts = service.metadata or {}
    metadata = {
        "slug": params.slug,  # None: the web derives one from the pipeline's name
        "rate_limit_per_minute": params.rate_limit_per_minute,
        "monthly_quota": params.monthly_quota,
        "description": params.description,
        "service_artifact_id": service.id,
        "service_key": service.key,
        "mode": facts.get("mode"),
        "adapters": [a.get("name") for a in facts.get("adapters") or []],
    }
    ctx.progress(1, 1, f"Endpoint {params.slug or '(named after the pipeline)'} ready to publish")
    return {"endpoint": ArtifactOut(ArtifactType.ENDPOINT, None, metadata)}
