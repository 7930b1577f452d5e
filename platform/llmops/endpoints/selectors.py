"""Reads for endpoints. Every read is scoped with ``for_user``: another workspace's endpoint,
key or provider is a 404."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from llmops.endpoints.models import Endpoint, EndpointKey, Feedback, HostedProvider, RequestLog
from llmops.runs.models import NODE_DONE, PipelineRun

MAX_USAGE_MINUTES = 24 * 60
MAX_USAGE_ROWS = 100_000


def endpoint_list(*, user, workspace=None):
    qs = Endpoint.objects.for_user(user).select_related("active_version", "pipeline", "provider")
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    since = timezone.now() - timedelta(hours=24)
    return (
        qs.annotate(
            requests_24h=Count("requests", filter=Q(requests__created_at__gte=since), distinct=True),
        )
        .distinct()
        .order_by("-updated_at", "-id")
    )


def endpoint_get(*, user, slug: str) -> Endpoint:
    endpoint = (
        Endpoint.objects.for_user(user)
        .select_related("active_version", "pipeline", "provider", "workspace")
        .filter(slug=slug)
        .first()
    )
    if endpoint is None:
        raise Http404("No such endpoint")
    return endpoint


def endpoint_versions(*, endpoint: Endpoint):
    return endpoint.versions.select_related("run", "created_by").order_by("-number")


def endpoint_dict(endpoint: Endpoint, *, base_url: str = "") -> dict[str, Any]:
    version = endpoint.active_version
    return {
        "id": endpoint.pk,
        "slug": endpoint.slug,
        "name": endpoint.name,
        "description": endpoint.description,
        "workspace": endpoint.workspace_id,
        "published": endpoint.is_published,
        "live": endpoint.is_live,
        "version": version.number if version else None,
        "run": version.run_id if version else None,
        "service_artifact": version.service_artifact_id if version else None,
        "mode": (version.facts or {}).get("mode") if version else None,
        "adapters": [a.get("name") for a in (version.facts or {}).get("adapters", [])] if version else [],
        "rate_limit_per_minute": endpoint.rate_limit_per_minute,
        "monthly_quota": endpoint.monthly_quota,
        "provider": endpoint.provider_id,
        "pipeline": endpoint.pipeline_id,
        "query_url": f"{base_url}/api/v1/endpoints/{endpoint.slug}/query",
        "openai_base_url": f"{base_url}/v1",
        "created_at": endpoint.created_at.isoformat(),
        "updated_at": endpoint.updated_at.isoformat(),
    }


def version_dict(version) -> dict[str, Any]:
    return {
        "number": version.number,
        "run": version.run_id,
        "service_artifact": version.service_artifact_id,
        "service_key": version.service_key,
        "note": version.note,
        "created_at": version.created_at.isoformat(),
    }


# --- keys ------------------------------------------------------------------------------------------


def key_list(*, user, workspace=None, endpoint: Endpoint | None = None):
    qs = EndpointKey.objects.for_user(user).select_related("endpoint")
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    if endpoint is not None:
        qs = qs.filter(Q(endpoint=endpoint) | Q(endpoint__isnull=True, workspace_id=endpoint.workspace_id))
    return qs.distinct().order_by("-created_at", "-id")


def key_get(*, user, key_id: int) -> EndpointKey:
    key = EndpointKey.objects.for_user(user).select_related("endpoint", "workspace").filter(pk=key_id).first()
    if key is None:
        raise Http404("No such key")
    return key


def key_dict(key: EndpointKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "scope": key.scope,
        "endpoint": key.endpoint.slug if key.endpoint else None,
        "workspace": key.workspace_id,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "monthly_quota": key.monthly_quota,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "active": key.is_active,
    }


# --- providers -----------------------------------------------------------------------------------


def provider_list(*, user, workspace=None):
    qs = HostedProvider.objects.for_user(user)
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    return qs.distinct().order_by("name", "id")


def provider_get(*, user, provider_id: int) -> HostedProvider:
    provider = (
        HostedProvider.objects.for_user(user).select_related("workspace").filter(pk=provider_id).first()
    )
    if provider is None:
        raise Http404("No such hosted model")
    return provider


def provider_dict(provider: HostedProvider) -> dict[str, Any]:
    return {
        "id": provider.pk,
        "name": provider.name,
        "base_url": provider.base_url,
        "model": provider.model,
        "api_key": f"…{provider.api_key_hint}"
        if provider.api_key_hint
        else ("set" if provider.api_key_encrypted else ""),
        "workspace": provider.workspace_id,
    }


# --- usage -----------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)  # nearest-rank percentile
    return round(ordered[rank], 1)


def usage_series(*, endpoint: Endpoint, minutes: int = 60) -> dict[str, Any]:
    """Per-minute requests, errors and p50/p95 latency of the last ``minutes`` (for the charts)."""
    minutes = max(1, min(int(minutes), MAX_USAGE_MINUTES))
    now = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(minutes=minutes)
    rows = (
        RequestLog.objects.filter(endpoint=endpoint, created_at__gte=start)
        .order_by("created_at")
        .values_list("created_at", "status", "latency_ms")[:MAX_USAGE_ROWS]
    )
    buckets: list[dict[str, Any]] = [{"requests": 0, "errors": 0, "latencies": []} for _ in range(minutes)]
    for created, status, latency in rows:
        index = min(minutes - 1, int((created - start).total_seconds() // 60))
        bucket = buckets[index]
        bucket["requests"] += 1
        if status >= 400:
            bucket["errors"] += 1
        elif status == 200:
            bucket["latencies"].append(latency)
    labels = [(start + timedelta(minutes=i)).strftime("%H:%M") for i in range(minutes)]
    all_ok = [lat for b in buckets for lat in b["latencies"]]
    return {
        "labels": labels,
        "minutes": minutes,
        "requests": [b["requests"] for b in buckets],
        "errors": [b["errors"] for b in buckets],
        "p50_ms": [_percentile(b["latencies"], 0.5) for b in buckets],
        "p95_ms": [_percentile(b["latencies"], 0.95) for b in buckets],
        "total": sum(b["requests"] for b in buckets),
        "total_errors": sum(b["errors"] for b in buckets),
        "p50_all_ms": _percentile(all_ok, 0.5),
        "p95_all_ms": _percentile(all_ok, 0.95),
    }


def recent_requests(*, endpoint: Endpoint, limit: int = 20):
    return endpoint.requests.select_related("key").order_by("-created_at", "-id")[:limit]


# --- feedback --------------------------------------------------------------------------------------


def feedback_list(*, endpoint: Endpoint, limit: int = 50):
    return endpoint.feedback.order_by("-created_at", "-id")[:limit]


def feedback_counts(*, endpoint: Endpoint) -> dict[str, int]:
    counts = endpoint.feedback.aggregate(
        up=Count("id", filter=Q(rating=1)), down=Count("id", filter=Q(rating=-1))
    )
    return {"up": counts["up"] or 0, "down": counts["down"] or 0}


def feedback_jsonl(*, endpoint: Endpoint, only: str = "all") -> Iterator[str]:
    """One JSON object a line, in the instruction format train.lora reads ({instruction, input,
    output}) plus the rating, comment and sources; ``only`` = good / bad / all."""
    qs = Feedback.objects.filter(endpoint=endpoint).order_by("created_at", "id")
    if only == "good":
        qs = qs.filter(rating=1)
    elif only == "bad":
        qs = qs.filter(rating=-1)
    for item in qs.iterator(chunk_size=500):
        yield (
            json.dumps(
                {
                    "instruction": item.question,
                    "input": "",
                    "output": item.answer,
                    "rating": item.rating,
                    "comment": item.comment,
                    "sources": item.sources,
                    "endpoint": endpoint.slug,
                    "created_at": item.created_at.isoformat(),
                },
                ensure_ascii=False,
            )
            + "\n"
        )


# --- runs ------------------------------------------------------------------------------------------


def run_publishable(*, run: PipelineRun) -> bool:
    """Whether a run has a finished Q&A service step (the run page shows Publish then)."""
    return run.node_runs.filter(kind="serve.rag", status__in=list(NODE_DONE)).exists()


def endpoints_of_run(*, run: PipelineRun):
    return Endpoint.objects.filter(versions__run=run).distinct()
