"""Who may call an endpoint, and how often: key checks, per-key rate limit and monthly quota.

Order of the checks, and why: a missing, unknown or revoked key is 401 before anything else
(nothing is revealed to a caller without a key); an unknown, unpublished or other-workspace
slug is 404 (another workspace's endpoints do not exist for this key); a key of this
workspace scoped to another endpoint is 403; then the rate limit and the quota (429).

Counters live in Django's cache (Redis): one atomic INCRBY per request (pipelined with its
TTL, see ``_incr``), so concurrent web processes share one count. The per-minute limit is a fixed window
(a burst at a window's edge may reach twice the limit for a moment: the usual trade for one
round trip). Keys are looked up on every request, so a revocation applies to the next one.
"""

from __future__ import annotations

import calendar
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.accounts.services import token_digest
from llmops.config.broker import redis_client
from llmops.endpoints.models import Endpoint, EndpointKey, RequestLog
from llmops.endpoints.services import KEY_PREFIX

QUOTA_TTL_S = 35 * 24 * 3600  # a month and a margin


class AccessError(Exception):
    """A refused request: HTTP status, message, the field to blame (422) and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        code: str = "",
    ):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = headers or {}
        self.code = code
        self.endpoint: Grant | None = None  # set when the endpoint was known (for the log)
        self.key: EndpointKey | None = None
        self.endpoint_model: Endpoint | None = None  # the endpoint asked for, when it exists


@dataclass
class Grant:
    """Everything a request needs once it is allowed; plain values, safe across threads."""

    endpoint_id: int
    workspace_id: int
    slug: str
    name: str
    version_id: int | None
    version_number: int | None
    service_artifact_id: int | None
    service_key: str
    provider_id: int | None
    facts: dict[str, Any] = field(default_factory=dict)
    key_id: int | None = None
    created: int = 0  # unix time the endpoint was created (OpenAI's model "created")

    @property
    def adapters(self) -> list[str]:
        return [a.get("name") for a in self.facts.get("adapters") or [] if a.get("name")]

    @property
    def max_tokens(self) -> int:
        return int(self.facts.get("max_tokens") or 256)


def _grant(endpoint: Endpoint, key: EndpointKey | None) -> Grant:
    version = endpoint.active_version
    return Grant(
        endpoint_id=endpoint.pk,
        workspace_id=endpoint.workspace_id,
        slug=endpoint.slug,
        name=endpoint.name,
        version_id=version.pk if version else None,
        version_number=version.number if version else None,
        service_artifact_id=version.service_artifact_id if version else None,
        service_key=version.service_key if version else "",
        provider_id=endpoint.provider_id,
        facts=dict(version.facts) if version else {},
        key_id=key.pk if key else None,
        created=int(endpoint.created_at.timestamp()),
    )


def bearer_secret(authorization: str | None) -> str:
    scheme, _, secret = (authorization or "").strip().partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def key_for_secret(secret: str) -> EndpointKey:
    """The active key with this secret; AccessError 401 otherwise."""
    if not secret:
        raise AccessError(
            401, "Missing API key: send the header “Authorization: Bearer <key>”.", code="missing_api_key"
        )
    key = None
    if secret.startswith(KEY_PREFIX):
        key = EndpointKey.objects.filter(digest=token_digest(secret)).first()
    if key is None:
        raise AccessError(401, "Invalid API key.", code="invalid_api_key")
    if key.revoked_at is not None:
        error = AccessError(401, "This API key was revoked.", code="invalid_api_key")
        error.key = key
        raise error
    return key


def live_endpoint(slug: str) -> Endpoint | None:
    return (
        Endpoint.objects.select_related("active_version")
        .filter(slug=slug, is_published=True, active_version__isnull=False)
        .first()
    )


# --- the lookup cache ----------------------------------------------------------------------------
# Each process keeps the (endpoint, key) pairs it admitted recently, so a request costs no
# database query. A generation token in Redis says whether they are still good: every change
# to an endpoint, version, key or hosted model replaces it (access_changed(), after commit), and
# every request reads it (one GET), so a revocation still applies to the very next request.
_GENERATION = "ep:access-generation"
_LOOKUP_MAX_AGE_S = 60.0  # and a bound, should a change ever miss its signal
_LOOKUP_MAX = 4096
_lookups: dict[tuple[str, str], tuple[str, float, Endpoint, EndpointKey]] = {}


def access_changed() -> None:
    """Endpoints or keys changed: every process looks them up again. Now, and again once the
    change commits: a lookup made in between read the old rows and must not be kept."""
    _new_generation()
    transaction.on_commit(_new_generation, robust=True)


def _new_generation() -> None:
    redis_client().set(cache.make_and_validate_key(_GENERATION), uuid.uuid4().hex)


def _generation() -> str | None:
    key = cache.make_and_validate_key(_GENERATION)
    client = redis_client()
    value = client.get(key)
    if value is None:  # first use, or Redis was emptied: start one, cache nothing this time
        client.set(key, uuid.uuid4().hex, nx=True)
        return None
    return value.decode()


def _lookup(slug: str, secret: str) -> tuple[Endpoint | None, EndpointKey]:
    """The live endpoint for ``slug`` (None: no such endpoint) and the active key for ``secret``
    (AccessError 401 otherwise), from this process's cache when nothing changed since."""
    generation = _generation() if secret.startswith(KEY_PREFIX) else None
    ident = (slug, token_digest(secret))  # the secret itself is not kept
    cached = _lookups.get(ident) if generation else None
    if cached is not None and cached[0] == generation and time.monotonic() - cached[1] < _LOOKUP_MAX_AGE_S:
        return cached[2], cached[3]
    endpoint = live_endpoint(slug)
    try:
        key = key_for_secret(secret)
    except AccessError as error:
        error.endpoint_model = endpoint
        raise
    if generation and endpoint is not None:
        if len(_lookups) >= _LOOKUP_MAX:
            _lookups.clear()
        _lookups[ident] = (generation, time.monotonic(), endpoint, key)
    return endpoint, key


def authorize_key(*, authorization: str | None, slug: str, count: bool = True) -> Grant:
    """Check the key for ``slug`` and (with ``count``) count the request against its limits."""
    try:
        endpoint, key = _lookup(slug, bearer_secret(authorization))
    except AccessError as error:
        endpoint = error.endpoint_model
        if endpoint is not None:  # logged on the endpoint: its owners see refused callers too
            revoked = getattr(error, "key", None)
            error.endpoint = _grant(
                endpoint, revoked if revoked and revoked.workspace_id == endpoint.workspace_id else None
            )
        raise
    if endpoint is None or endpoint.workspace_id != key.workspace_id:
        raise AccessError(404, f"No published endpoint “{slug[:60]}”.", code="model_not_found")
    grant = _grant(endpoint, key)
    if key.endpoint_id is not None and key.endpoint_id != endpoint.pk:
        error = AccessError(403, "This API key is for another endpoint.", code="wrong_endpoint")
        error.endpoint = grant
        raise error
    if count:
        try:
            _count(key, endpoint)
        except AccessError as error:
            error.endpoint = grant
            raise
    _touch(key)
    return grant


def authorize_user(*, user, slug: str) -> Grant:
    """The playground: a member of the endpoint's workspace, signed in (no key, no limit)."""
    endpoint = Endpoint.objects.select_related("active_version").filter(slug=slug).first()
    if endpoint is None or not user_can(user=user, workspace=endpoint.workspace, role=Role.VIEWER):
        raise AccessError(404, f"No endpoint “{slug[:60]}”.")
    if not endpoint.is_live:
        raise AccessError(409, "This endpoint is unpublished: publish it again to try it.")
    return _grant(endpoint, None)


def keys_models(*, authorization: str | None) -> list[Grant]:
    """The endpoints a key may call (GET /v1/models)."""
    key = key_for_secret(bearer_secret(authorization))
    qs = Endpoint.objects.select_related("active_version").filter(
        workspace_id=key.workspace_id, is_published=True, active_version__isnull=False
    )
    if key.endpoint_id is not None:
        qs = qs.filter(pk=key.endpoint_id)
    return [_grant(e, key) for e in qs.order_by("slug")]


def _touch(key: EndpointKey) -> None:
    now = timezone.now()
    # Writing on every request would serialise traffic on one row; a minute is precise enough.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        EndpointKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now  # the cached copy too


def _count(key: EndpointKey, endpoint: Endpoint) -> None:
    limit = key.rate_limit_per_minute or endpoint.rate_limit_per_minute
    now = time.time()
    window = int(now // 60)
    used = _incr(f"ep:rl:{key.pk}:{window}", ttl=90)
    if limit and used > limit:
        wait = max(1, math.ceil((window + 1) * 60 - now))
        raise AccessError(
            429,
            f"Rate limit of {limit} requests a minute reached; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
            code="rate_limit_exceeded",
        )
    quota = key.monthly_quota if key.monthly_quota is not None else endpoint.monthly_quota
    if quota:
        _check_quota(key, quota)


def _check_quota(key: EndpointKey, quota: int) -> None:
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    used = _incr(f"ep:quota:{key.pk}:{now:%Y%m}", ttl=QUOTA_TTL_S)
    if used == 1:  # a new counter (first request this month, or the cache lost it): seed from the log
        earlier = _used_this_month(key, month_start)
        if earlier:
            used = _incr(f"ep:quota:{key.pk}:{now:%Y%m}", ttl=QUOTA_TTL_S, by=earlier)
    if used > quota:
        raise AccessError(
            429,
            f"Monthly quota of {quota} requests used up; it renews on the 1st.",
            headers={"Retry-After": str(_seconds_to_next_month(now))},
            code="quota_exceeded",
        )


def _seconds_to_next_month(now: datetime) -> int:
    days = calendar.monthrange(now.year, now.month)[1]
    next_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)
    return max(1, int((next_month - now).total_seconds()))


def _used_this_month(key: EndpointKey, month_start: datetime) -> int:
    return RequestLog.objects.filter(key=key, created_at__gte=month_start, status__lt=400).count()


def _incr(name: str, *, ttl: int, by: int = 1) -> int:
    """Atomically add ``by`` to a counter that expires ``ttl`` seconds after it was created.

    On Django's Redis cache this is one round trip (INCRBY and TTL pipelined; EXPIRE only when
    the counter is new); other cache backends get add + incr."""
    backend = getattr(cache, "_cache", None)
    if not hasattr(backend, "get_client"):
        cache.add(name, 0, ttl)
        try:
            return cache.incr(name, by)
        except ValueError:  # expired between add and incr: start the window again
            cache.set(name, by, ttl)
            return by
    key = cache.make_and_validate_key(name)
    client = redis_client()  # the cache's server (settings.CACHES); process-wide, never reconnecting
    pipe = client.pipeline(transaction=False)
    pipe.incrby(key, by)
    pipe.ttl(key)
    value, remaining = pipe.execute()
    if remaining < 0:  # no expiry yet: the counter was just created
        client.expire(key, ttl)
    return int(value)
