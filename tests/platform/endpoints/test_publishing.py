"""Publishing: endpoints pinned to service artifacts, versions switched atomically, rollback,
unpublish, publishing a finished run (button and Publish API step), roles and isolation."""

from __future__ import annotations

import pytest

from llmops.endpoints import access, services
from llmops.endpoints.access import AccessError
from llmops.endpoints.models import Endpoint
from llmops.endpoints.services import EndpointError
from tests.platform.endpoints.conftest import store_service, workspace_of

pytestmark = pytest.mark.django_db


def test_publish_then_publish_again_switches_the_version(user, toy_services):
    ws = workspace_of(user)
    first = store_service(workspace=ws, folder=toy_services["extractive"], name="a")
    second = store_service(workspace=ws, folder=toy_services["generate"], name="b")
    p1 = services.endpoint_publish_artifact(user=user, workspace=ws, artifact=first, slug="support-bot")
    assert p1.created and p1.version.number == 1
    assert p1.endpoint.active_version == p1.version and p1.endpoint.is_live
    assert p1.version.facts["mode"] == "extractive"
    p2 = services.endpoint_publish_artifact(user=user, workspace=ws, artifact=second, slug="support-bot")
    assert not p2.created and p2.endpoint.pk == p1.endpoint.pk
    endpoint = Endpoint.objects.get(pk=p1.endpoint.pk)
    assert endpoint.active_version.number == 2 and endpoint.active_version.service_key == second.key
    services.endpoint_rollback(user=user, endpoint=endpoint, number=1)
    endpoint.refresh_from_db()
    assert endpoint.active_version.service_key == first.key
    with pytest.raises(EndpointError) as err:
        services.endpoint_rollback(user=user, endpoint=endpoint, number=9)
    assert err.value.status == 404


def test_unpublish_makes_every_request_a_404(user, publish):
    endpoint, secret = publish(user)
    grant = access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug)
    assert grant.endpoint_id == endpoint.pk
    services.endpoint_set_published(user=user, endpoint=endpoint, published=False)
    with pytest.raises(AccessError) as err:
        access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug)
    assert err.value.status == 404
    services.endpoint_set_published(user=user, endpoint=endpoint, published=True)
    assert access.authorize_key(authorization=f"Bearer {secret}", slug=endpoint.slug).version_number == 1


def test_slugs_are_validated_and_owned(user, other_user, toy_services):
    mine = store_service(workspace=workspace_of(user), folder=toy_services["extractive"], name="x")
    theirs = store_service(workspace=workspace_of(other_user), folder=toy_services["extractive"], name="x")
    services.endpoint_publish_artifact(user=user, workspace=workspace_of(user), artifact=mine, slug="taken")
    with pytest.raises(EndpointError) as err:
        services.endpoint_publish_artifact(
            user=other_user, workspace=workspace_of(other_user), artifact=theirs, slug="taken"
        )
    assert err.value.status == 409 and err.value.field == "slug"
    with pytest.raises(EndpointError) as err:
        services.endpoint_publish_artifact(
            user=user, workspace=workspace_of(user), artifact=mine, slug="Bad Slug!"
        )
    assert err.value.status == 422 and err.value.field == "slug"
    # Another workspace's artifact cannot be published here.
    with pytest.raises(EndpointError):
        services.endpoint_publish_artifact(
            user=user, workspace=workspace_of(user), artifact=theirs, slug="mine"
        )


def test_viewers_cannot_publish(user, make_user, toy_services):
    from llmops.accounts.models import Role
    from llmops.accounts.permissions import RoleRequired
    from llmops.accounts.services import membership_set

    viewer = make_user("viewer")
    ws = workspace_of(user)
    membership_set(workspace=ws, user=viewer, role=Role.VIEWER)
    artifact = store_service(workspace=ws, folder=toy_services["extractive"], name="v")
    with pytest.raises(RoleRequired):
        services.endpoint_publish_artifact(user=viewer, workspace=ws, artifact=artifact, slug="nope")


# --- from a run ------------------------------------------------------------------------------------


def make_run(
    user, *, artifacts: dict[str, object], publish_meta: dict | None = None, name="Docs Q&A", pipeline=None
):
    """A finished run (rows as the engine leaves them) whose serve.rag node made ``artifacts``."""
    from llmops.builder.models import Pipeline, PipelineVersion
    from llmops.runs.models import Artifact, NodeRun, NodeStatus, PipelineRun, RunStatus

    ws = workspace_of(user)
    pipeline = pipeline or Pipeline.objects.create(workspace=ws, name=name, created_by=user)
    number = pipeline.versions.count() + 1
    version = PipelineVersion.objects.create(
        workspace=ws, pipeline=pipeline, number=number, graph={"nodes": [], "edges": []}
    )
    run = PipelineRun.objects.create(
        workspace=ws,
        pipeline=pipeline,
        version=version,
        graph=version.graph,
        created_by=user,
        status=RunStatus.SUCCEEDED,
    )
    for position, (node_id, artifact) in enumerate(artifacts.items()):
        node = NodeRun.objects.create(
            run=run,
            node_id=node_id,
            kind="serve.rag",
            queue="serve",
            position=position,
            status=NodeStatus.SUCCEEDED,
            outputs={"service": artifact.pk},
        )
        Artifact.objects.filter(pk=artifact.pk).update(node_run=node)
    if publish_meta is not None:
        service = next(iter(artifacts.values()))
        endpoint_artifact = Artifact.objects.create(
            workspace=ws,
            key=f"ep-{run.pk}",
            type="Endpoint",
            metadata={"service_artifact_id": service.pk, "service_key": service.key, **publish_meta},
        )
        NodeRun.objects.create(
            run=run,
            node_id="publish",
            kind="publish.api",
            queue="cpu",
            position=9,
            status=NodeStatus.SUCCEEDED,
            outputs={"endpoint": endpoint_artifact.pk},
        )
    return run


def test_publish_button_names_the_endpoint_after_the_pipeline(user, toy_services):
    artifact = store_service(workspace=workspace_of(user), folder=toy_services["extractive"], name="r")
    run = make_run(user, artifacts={"serve": artifact})
    [publication] = services.endpoints_publish_run(user=user, run=run)
    assert publication.endpoint.slug == "docs-qa" and publication.endpoint.pipeline_id == run.pipeline_id
    assert publication.version.run_id == run.pk
    # A newer run of the same pipeline becomes version 2 of the same endpoint...
    newer = store_service(workspace=workspace_of(user), folder=toy_services["generate"], name="r2")
    run2 = make_run(user, artifacts={"serve": newer}, pipeline=run.pipeline)
    [again] = services.endpoints_publish_run(user=user, run=run2)
    assert again.endpoint.pk == publication.endpoint.pk and again.version.number == 2
    assert Endpoint.objects.get(pk=again.endpoint.pk).active_version.service_key == newer.key
    # ...while another pipeline of the same name gets its own address.
    other = make_run(user, artifacts={"serve": artifact})
    [third] = services.endpoints_publish_run(user=user, run=other)
    assert third.created and third.endpoint.slug == "docs-qa-2"


def test_a_run_without_a_service_cannot_be_published(user):
    run = make_run(user, artifacts={})
    with pytest.raises(EndpointError) as err:
        services.endpoints_publish_run(user=user, run=run)
    assert err.value.status == 422


def test_a_publish_api_step_publishes_when_the_run_succeeds(
    user, toy_services, django_capture_on_commit_callbacks
):
    """The run's final event (EVENTS.md: type "run", status succeeded) triggers publishing."""
    from llmops.runs.events import emit

    artifact = store_service(workspace=workspace_of(user), folder=toy_services["extractive"], name="auto")
    run = make_run(
        user,
        artifacts={"serve": artifact},
        publish_meta={
            "slug": "auto-bot",
            "rate_limit_per_minute": 7,
            "monthly_quota": 0,
            "description": "From the step",
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        emit(run_id=run.pk, type="run", status="succeeded")
    endpoint = Endpoint.objects.get(slug="auto-bot")
    assert endpoint.rate_limit_per_minute == 7 and endpoint.description == "From the step"
    assert (
        endpoint.active_version.run_id == run.pk
        and endpoint.active_version.service_artifact_id == artifact.pk
    )
    # A failed run publishes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        emit(run_id=run.pk, type="run", status="failed")
    assert Endpoint.objects.filter(slug="auto-bot").first().versions.count() == 1
