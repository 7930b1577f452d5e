"""Writes for endpoints: publish (from a run or an artifact), switch versions, unpublish,
keys, hosted providers, feedback and request logs.

Services that act for someone take ``user`` and check the role themselves. A refused
request raises ``EndpointError`` with the HTTP status the API answers and a message for the
person who asked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from llmops.accounts.models import Role, Workspace
from llmops.accounts.permissions import require_workspace_role
from llmops.accounts.services import secret_create, token_digest
from llmops.config.broker import redis_client
from llmops.endpoints import crypto
from llmops.endpoints.models import (
    Endpoint,
    EndpointKey,
    EndpointVersion,
    Feedback,
    HostedProvider,
    KeyScope,
    RequestLog,
)
from llmops.runs.models import NODE_DONE, Artifact, PipelineRun
from pipelines.nodes.publish_api.spec import SLUG_PATTERN
from pipelines.types import ArtifactType

log = logging.getLogger(__name__)

KEY_PREFIX = "llmk_"  # noqa: S105 - a public marker (personal API tokens start with "llmops_")
NAME_MAX = 100
SLUG_MAX = 50
ANSWER_CACHE_S = 3600  # feedback by request id finds the question and answer this long
MAX_FEEDBACK_CHARS = 20_000


class EndpointError(Exception):
    def __init__(self, message: str, *, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


def _clean_name(name: str, *, what: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise EndpointError(f"Give the {what} a name.", status=422, field="name")
    if len(name) > NAME_MAX:
        raise EndpointError(f"A {what} name has at most {NAME_MAX} characters.", status=422, field="name")
    return name


def _editor(user, workspace: Workspace) -> None:
    require_workspace_role(user=user, workspace=workspace, role=Role.EDITOR)


# --- publishing ---------------------------------------------------------------------------------


@dataclass
class Publication:
    endpoint: Endpoint
    version: EndpointVersion
    created: bool  # a new endpoint (else a new version of an existing one)


def _valid_slug(slug: str) -> str:
    import re

    slug = (slug or "").strip().lower()
    if not re.fullmatch(SLUG_PATTERN, slug):
        raise EndpointError(
            "An address uses lowercase letters, digits and dashes (at most 50), e.g. support-bot.",
            status=422,
            field="slug",
        )
    return slug


def _free_slug(base: str) -> str:
    base = slugify(base)[:SLUG_MAX].strip("-") or "endpoint"
    slug, n = base, 1
    while Endpoint.objects.filter(slug=slug).exists():
        n += 1
        suffix = f"-{n}"
        slug = base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix
    return slug


def _service_artifact(*, workspace_id: int, artifact_id: int | None) -> Artifact:
    artifact = Artifact.objects.filter(
        pk=artifact_id, workspace_id=workspace_id, type=ArtifactType.SERVICE
    ).first()
    if artifact is None:
        raise EndpointError("That run produced no service to publish.", status=404)
    return artifact


def endpoint_publish_artifact(
    *,
    user,
    workspace: Workspace,
    artifact: Artifact,
    run: PipelineRun | None = None,
    slug: str | None = None,
    name: str | None = None,
    description: str | None = None,
    rate_limit_per_minute: int | None = None,
    monthly_quota: int | None = None,
    note: str = "",
) -> Publication:
    """Pin ``artifact`` as the new active version of the endpoint ``slug`` (created if new).

    An explicit slug of an endpoint in this workspace gets a new version; one taken by
    another workspace is refused. Without a slug, one is made from ``name``.
    """
    _editor(user, workspace)
    if artifact.workspace_id != workspace.pk or artifact.type != ArtifactType.SERVICE:
        raise EndpointError("Only a service of this workspace can be published.", status=404)
    with transaction.atomic():
        endpoint, created = _endpoint_for(
            user=user, workspace=workspace, slug=slug, name=name, run=run, description=description
        )
        changes = {}
        if rate_limit_per_minute is not None:
            changes["rate_limit_per_minute"] = rate_limit_per_minute
        if monthly_quota is not None:
            changes["monthly_quota"] = monthly_quota
        if description:
            changes["description"] = description[:1000]
        version = _add_version(user=user, endpoint=endpoint, artifact=artifact, run=run, note=note)
        # One UPDATE moves the pointer: a request reads the old or the new version, never a mix.
        Endpoint.objects.filter(pk=endpoint.pk).update(
            active_version=version, is_published=True, updated_at=timezone.now(), **changes
        )
        _access_changed()  # an UPDATE sends no signal
        endpoint.refresh_from_db()
    return Publication(endpoint, version, created)


def _access_changed() -> None:
    from llmops.endpoints.access import access_changed  # access imports this module

    access_changed()


def _endpoint_for(*, user, workspace, slug, name, run, description) -> tuple[Endpoint, bool]:
    pipeline = run.pipeline if run is not None else None
    if slug:
        slug = _valid_slug(slug)
        existing = Endpoint.objects.select_for_update().filter(slug=slug).first()
        if existing is not None:
            if existing.workspace_id != workspace.pk:
                raise EndpointError(
                    f"The address “{slug}” is taken; choose another.", status=409, field="slug"
                )
            return existing, False
    else:
        existing = None
        if pipeline is not None:  # the pipeline's own endpoint, published again
            existing = (
                Endpoint.objects.select_for_update().filter(workspace=workspace, pipeline=pipeline).first()
            )
        if existing is not None:
            return existing, False
        slug = _free_slug(name or (pipeline.name if pipeline else "endpoint"))
    try:
        with transaction.atomic():
            endpoint = Endpoint.objects.create(
                workspace=workspace,
                slug=slug,
                name=(name or (pipeline.name if pipeline else slug))[:200],
                description=(description or "")[:1000],
                pipeline=pipeline,
                created_by=user,
            )
    except IntegrityError as exc:  # a concurrent publish took the slug first
        raise EndpointError(
            f"The address “{slug}” was just taken; try again.", status=409, field="slug"
        ) from exc
    return endpoint, True


def _add_version(*, user, endpoint: Endpoint, artifact: Artifact, run, note: str) -> EndpointVersion:
    last = endpoint.versions.order_by("-number").values_list("number", flat=True).first() or 0
    facts = {k: v for k, v in (artifact.metadata or {}).items() if k != "model_artifact"}
    return EndpointVersion.objects.create(
        endpoint=endpoint,
        number=last + 1,
        run=run,
        service_artifact=artifact,
        service_key=artifact.key,
        facts=facts,
        note=note[:200] or (f"Run {run.pk}" if run else ""),
        created_by=user,
    )


def endpoints_publish_run(*, user, run: PipelineRun, slug: str | None = None) -> list[Publication]:
    """Publish what a finished run built: each Publish API step's endpoint, or, without one,
    each service (the “Publish” button on a run page)."""
    _editor(user, run.workspace)
    node_runs = list(run.node_runs.all())
    done = [n for n in node_runs if n.status in NODE_DONE]
    ids = [i for n in done for i in n.outputs.values() if isinstance(i, int)]
    artifacts = {a.pk: a for a in Artifact.objects.filter(pk__in=ids, workspace_id=run.workspace_id)}
    endpoints = [
        artifacts[i] for n in done if n.kind == "publish.api" for i in n.outputs.values() if i in artifacts
    ]
    if endpoints:
        return [
            _publish_endpoint_artifact(
                user=user, run=run, artifact=a, slug=slug if len(endpoints) == 1 else None
            )
            for a in endpoints
        ]
    services = [
        artifacts[i] for n in done if n.kind == "serve.rag" for i in n.outputs.values() if i in artifacts
    ]
    if not services:
        raise EndpointError("This run has no finished Q&A service step to publish.", status=422)
    out = []
    for position, artifact in enumerate(services):
        name = run.pipeline.name if position == 0 else f"{run.pipeline.name} {artifact.node_run.node_id}"
        out.append(
            endpoint_publish_artifact(
                user=user,
                workspace=run.workspace,
                artifact=artifact,
                run=run,
                name=name,
                slug=slug if position == 0 else None,
            )
        )
    return out


def _publish_endpoint_artifact(
    *, user, run: PipelineRun, artifact: Artifact, slug: str | None
) -> Publication:
    meta = artifact.metadata or {}
    service = _service_artifact(workspace_id=run.workspace_id, artifact_id=meta.get("service_artifact_id"))
    return endpoint_publish_artifact(
        user=user,
        workspace=run.workspace,
        artifact=service,
        run=run,
        slug=slug or meta.get("slug"),
        name=run.pipeline.name,
        description=meta.get("description") or None,
        rate_limit_per_minute=meta.get("rate_limit_per_minute"),
        monthly_quota=meta.get("monthly_quota"),
    )


def run_publish_on_success(*, run_id: int) -> list[Publication]:
    """After a run succeeded: publish its Publish API steps (called once the engine's final
    event is committed; never raises into the engine)."""
    run = PipelineRun.objects.select_related("pipeline", "workspace", "created_by").filter(pk=run_id).first()
    if run is None or run.created_by is None or not run.node_runs.filter(kind="publish.api").exists():
        return []
    try:
        return endpoints_publish_run(user=run.created_by, run=run)
    except Exception:  # noqa: BLE001 - a publish problem must not break the run's completion
        log.exception("publishing the endpoints of run %s failed", run_id)
        return []


def endpoint_rollback(*, user, endpoint: Endpoint, number: int) -> EndpointVersion:
    _editor(user, endpoint.workspace)
    version = endpoint.versions.filter(number=number).first()
    if version is None:
        raise EndpointError(f"This endpoint has no version {number}.", status=404, field="version")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        active_version=version, is_published=True, updated_at=timezone.now()
    )
    _access_changed()  # an UPDATE sends no signal
    endpoint.refresh_from_db()
    return version


def endpoint_set_published(*, user, endpoint: Endpoint, published: bool) -> Endpoint:
    """Unpublish (every request gets 404 at once) or publish the active version again."""
    _editor(user, endpoint.workspace)
    if published and endpoint.active_version_id is None:
        raise EndpointError("This endpoint has no version to publish.", status=409)
    Endpoint.objects.filter(pk=endpoint.pk).update(is_published=published, updated_at=timezone.now())
    _access_changed()  # an UPDATE sends no signal
    endpoint.refresh_from_db()
    return endpoint


def endpoint_update(
    *,
    user,
    endpoint: Endpoint,
    name: str | None = None,
    description: str | None = None,
    rate_limit_per_minute: int | None = None,
    monthly_quota: int | None = None,
    provider_id: int | None | bool = False,
) -> Endpoint:
    """Change settings; ``provider_id`` None switches back to the service's own model."""
    _editor(user, endpoint.workspace)
    if name is not None:
        endpoint.name = _clean_name(name, what="endpoint")
    if description is not None:
        endpoint.description = description[:1000]
    if rate_limit_per_minute is not None:
        if not 1 <= rate_limit_per_minute <= 100_000:
            raise EndpointError(
                "The rate limit is 1 to 100000 requests a minute.", status=422, field="rate_limit_per_minute"
            )
        endpoint.rate_limit_per_minute = rate_limit_per_minute
    if monthly_quota is not None:
        if not 0 <= monthly_quota <= 1_000_000_000:
            raise EndpointError(
                "The monthly quota is 0 (no limit) to 1000000000.", status=422, field="monthly_quota"
            )
        endpoint.monthly_quota = monthly_quota
    if provider_id is not False:
        endpoint.provider = None
        if provider_id is not None:
            provider = HostedProvider.objects.filter(pk=provider_id, workspace=endpoint.workspace).first()
            if provider is None:
                raise EndpointError("No such hosted model in this workspace.", status=404, field="provider")
            endpoint.provider = provider
    endpoint.save()
    return endpoint


def endpoint_delete(*, user, endpoint: Endpoint) -> None:
    require_workspace_role(user=user, workspace=endpoint.workspace, role=Role.OWNER)
    endpoint.delete()


# --- keys -----------------------------------------------------------------------------------------


def key_create(
    *,
    user,
    workspace: Workspace,
    endpoint: Endpoint | None,
    name: str,
    scope: str = KeyScope.ENDPOINT,
    rate_limit_per_minute: int | None = None,
    monthly_quota: int | None = None,
) -> tuple[EndpointKey, str]:
    """A new key and its secret, which is never stored and cannot be shown again."""
    _editor(user, workspace)
    name = _clean_name(name, what="key")
    if scope not in KeyScope.values:
        raise EndpointError(f"scope is one of {', '.join(KeyScope.values)}.", status=422, field="scope")
    if scope == KeyScope.ENDPOINT and endpoint is None:
        raise EndpointError(
            "Name the endpoint this key is for (or use the workspace scope).", status=422, field="endpoint"
        )
    if endpoint is not None and endpoint.workspace_id != workspace.pk:
        raise EndpointError("No such endpoint.", status=404, field="endpoint")
    for field, value, top in (
        ("rate_limit_per_minute", rate_limit_per_minute, 100_000),
        ("monthly_quota", monthly_quota, 1_000_000_000),
    ):
        if value is not None and not 0 <= value <= top:
            raise EndpointError(f"{field} is 0 to {top}.", status=422, field=field)
    secret, prefix = secret_create(KEY_PREFIX)
    key = EndpointKey.objects.create(
        workspace=workspace,
        endpoint=endpoint if scope == KeyScope.ENDPOINT else None,
        scope=scope,
        name=name,
        prefix=prefix,
        digest=token_digest(secret),
        created_by=user,
        rate_limit_per_minute=rate_limit_per_minute or None,
        monthly_quota=monthly_quota,
    )
    return key, secret


def key_revoke(*, user, key: EndpointKey) -> EndpointKey:
    """Revoke at once: the next request with it is a 401 (keys are looked up on every request)."""
    _editor(user, key.workspace)
    EndpointKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    _access_changed()  # an UPDATE sends no signal
    key.refresh_from_db()
    return key


# --- hosted providers ---------------------------------------------------------------------------


def provider_create(
    *, user, workspace: Workspace, name: str, base_url: str, model: str, api_key: str = ""
) -> HostedProvider:
    _editor(user, workspace)
    name = _clean_name(name, what="hosted model")
    parts = urlsplit((base_url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(
            "The base URL starts with https:// (or http://), e.g. https://api.openai.com/v1.",
            status=422,
            field="base_url",
        )
    model = (model or "").strip()
    if not model or len(model) > 200:
        raise EndpointError("Name the model the API should use, e.g. gpt-4o-mini.", status=422, field="model")
    api_key = (api_key or "").strip()
    if len(api_key) > 1000:
        raise EndpointError("That API key is too long.", status=422, field="api_key")
    return HostedProvider.objects.create(
        workspace=workspace,
        name=name,
        base_url=base_url.strip().rstrip("/"),
        model=model,
        api_key_encrypted=crypto.encrypt(api_key),
        api_key_hint=api_key[-4:] if len(api_key) >= 12 else "",
        created_by=user,
    )


def provider_delete(*, user, provider: HostedProvider) -> None:
    _editor(user, provider.workspace)
    provider.delete()  # endpoints using it fall back to their own model (SET_NULL)


# --- request logs and feedback -------------------------------------------------------------------


def request_log_create(
    *,
    endpoint_id: int,
    workspace_id: int,
    version_id: int | None,
    key_id: int | None,
    request_id: str,
    route: str,
    status: int,
    latency_ms: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    error: str = "",
    at: datetime | None = None,
) -> RequestLog:
    return RequestLog.objects.create(
        endpoint_id=endpoint_id,
        workspace_id=workspace_id,
        version_id=version_id,
        key_id=key_id,
        request_id=request_id[:40],
        route=route,
        status=status,
        latency_ms=round(latency_ms, 2),
        prompt_tokens=max(0, int(prompt_tokens)),
        completion_tokens=max(0, int(completion_tokens)),
        error=(error or "")[:500],
        created_at=at or timezone.now(),
    )


def _answer_key(endpoint_id: int, request_id: str) -> str:
    return cache.make_and_validate_key(f"ep:answer:{endpoint_id}:{request_id}")


def answer_remember(*, endpoint_id: int, request_id: str, question: str, result: dict[str, Any]) -> None:
    """Keep an answer an hour, so feedback can name it by request id alone (as JSON: nothing
    read back from Redis is ever unpickled; on the process-wide client: this runs per request)."""
    value = {"question": question, "answer": result.get("answer", ""), "sources": result.get("sources", [])}
    redis_client().set(_answer_key(endpoint_id, request_id), json.dumps(value), ex=ANSWER_CACHE_S)


def answer_recall(*, endpoint_id: int, request_id: str) -> dict[str, Any] | None:
    raw = redis_client().get(_answer_key(endpoint_id, request_id)) if request_id else None
    return json.loads(raw) if raw else None


def feedback_create(
    *,
    endpoint: Endpoint,
    rating: int,
    request_id: str = "",
    question: str = "",
    answer: str = "",
    sources: list | None = None,
    comment: str = "",
    origin: str = "api",
    key_id: int | None = None,
    user=None,
) -> Feedback:
    if rating not in (1, -1):
        raise EndpointError("rating is 1 (good) or -1 (bad).", status=422, field="rating")
    remembered = answer_recall(endpoint_id=endpoint.pk, request_id=request_id)
    if remembered:
        question = question or remembered["question"]
        answer = answer or remembered["answer"]
        sources = sources if sources is not None else remembered["sources"]
    if not question or not answer:
        raise EndpointError(
            "Send the question and the answer (or the request id of a recent answer).",
            status=422,
            field="question" if not question else "answer",
        )
    for field, value in (("question", question), ("answer", answer), ("comment", comment)):
        if len(value) > MAX_FEEDBACK_CHARS:
            raise EndpointError(
                f"{field} is too long (at most {MAX_FEEDBACK_CHARS} characters).", status=422, field=field
            )
    return Feedback.objects.create(
        workspace_id=endpoint.workspace_id,
        endpoint=endpoint,
        request_id=request_id[:40],
        question=question,
        answer=answer,
        sources=_clean_sources(sources or []),
        rating=rating,
        comment=comment,
        origin=origin,
        key_id=key_id,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def _clean_sources(sources: list) -> list[dict[str, Any]]:
    keep = ("document", "document_id", "chunk", "score", "text", "page", "heading")
    return [{k: s[k] for k in keep if k in s} for s in sources[:50] if isinstance(s, dict)]
