"""The "publish.api" node: describes the endpoint the web creates when the run succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.context import ArtifactRef, NodeFailure
from pipelines.nodes.publish_api.run import run
from pipelines.nodes.publish_api.spec import PublishApiParams
from pipelines.registry import get_spec
from pipelines.types import ArtifactType
from tests.pipelines.serving.toys import ToyContext


def test_endpoint_metadata_pins_the_service(tmp_path):
    assert get_spec("publish.api").load_implementation() is run
    service = ArtifactRef(
        ArtifactType.SERVICE,
        Path("/svc"),
        {"mode": "extractive", "adapters": [{"name": "a"}]},
        key="svckey",
        id=42,
    )
    params = PublishApiParams.model_validate(
        {
            "slug": "support-bot",
            "rate_limit_per_minute": 5,
            "monthly_quota": 100,
            "description": "Answers support questions",
        }
    )
    out = run(ToyContext(tmp_path), {"service": service}, params)["endpoint"]
    assert out.type == ArtifactType.ENDPOINT and out.path is None
    assert out.metadata == {
        "slug": "support-bot",
        "rate_limit_per_minute": 5,
        "monthly_quota": 100,
        "description": "Answers support questions",
        "service_artifact_id": 42,
        "service_key": "svckey",
        "mode": "extractive",
        "adapters": ["a"],
    }


def test_without_a_slug_the_web_names_it(tmp_path):
    service = ArtifactRef(ArtifactType.SERVICE, Path("/svc"), {}, key="k", id=1)
    out = run(ToyContext(tmp_path), {"service": service}, PublishApiParams.model_validate({}))["endpoint"]
    assert out.metadata["slug"] is None


def test_a_service_without_identity_fails(tmp_path):
    service = ArtifactRef(ArtifactType.SERVICE, Path("/svc"), {}, key="", id=None)
    with pytest.raises(NodeFailure):
        run(ToyContext(tmp_path), {"service": service}, PublishApiParams.model_validate({}))
