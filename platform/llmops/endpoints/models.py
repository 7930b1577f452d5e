"""Published endpoints: a slug pinned to a run's service artifact, its versions, API keys,
request logs, feedback and hosted (OpenAI-compatible) generators.

An endpoint answers with its ``active_version``; publishing a newer run adds a version and
moves the pointer in one UPDATE, so a request sees the old or the new version, never a mix.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from llmops.accounts.models import WorkspaceOwned


class HostedProvider(WorkspaceOwned):
    """An OpenAI-compatible API (OpenAI, vLLM, Ollama, ...) that can write an endpoint's answers.

    The API key is stored encrypted (Fernet, key derived from SECRET_KEY; see crypto.py) and
    decrypted only on the serve worker that calls the API.
    """

    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=500, help_text="e.g. https://api.openai.com/v1")
    model = models.CharField(max_length=200, help_text="The model name the API expects.")
    api_key_encrypted = models.TextField(blank=True, default="")
    api_key_hint = models.CharField(max_length=12, blank=True, default="")  # last characters, to recognise it
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"


class Endpoint(WorkspaceOwned):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    pipeline = models.ForeignKey(
        "builder.Pipeline", null=True, blank=True, on_delete=models.SET_NULL, related_name="endpoints"
    )
    active_version = models.ForeignKey(
        "EndpointVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_published = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=60)
    monthly_quota = models.PositiveIntegerField(
        default=0, help_text="Requests per key per month; 0 = no limit."
    )
    provider = models.ForeignKey(
        HostedProvider,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="endpoints",
        help_text="When set, this hosted model writes the answers instead of the service's.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_live(self) -> bool:
        return self.is_published and self.active_version_id is not None


class EndpointVersion(models.Model):
    """One publication: the service artifact (by id and content key) of one run."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    run = models.ForeignKey(
        "runs.PipelineRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    service_artifact = models.ForeignKey("runs.Artifact", on_delete=models.PROTECT, related_name="+")
    service_key = models.CharField(max_length=64)
    facts = models.JSONField(default=dict)  # the service's mode, adapters, defaults (no paths)
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["endpoint", "-number"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "number"], name="uniq_endpoint_version")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} v{self.number}"


class KeyScope(models.TextChoices):
    ENDPOINT = "endpoint", "This endpoint"
    WORKSPACE = "workspace", "Every endpoint of the workspace"


class EndpointKey(WorkspaceOwned):
    """A secret that calls endpoints. Only its SHA-256 digest is kept (256 random bits: no
    dictionary to attack, so a fast hash and a one-query lookup are safe)."""

    endpoint = models.ForeignKey(
        Endpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="keys"
    )
    scope = models.CharField(max_length=12, choices=KeyScope.choices, default=KeyScope.ENDPOINT)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20)
    digest = models.CharField(max_length=64, unique=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the endpoint's."
    )
    monthly_quota = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the endpoint's.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RequestLog(models.Model):
    """One request to an endpoint (any outcome once the endpoint was known)."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="requests")
    version = models.ForeignKey(
        EndpointVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = models.ForeignKey(
        EndpointKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    request_id = models.CharField(max_length=40, db_index=True)
    route = models.CharField(max_length=20)  # query / chat / playground
    status = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["endpoint", "created_at"]),
            models.Index(fields=["key", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.route} {self.status} {self.latency_ms:.0f} ms"


class Feedback(WorkspaceOwned):
    """A thumbs up or down on one answer, with what was asked and answered: material for the
    next fine-tune (exported as JSONL)."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="feedback")
    request_id = models.CharField(max_length=40, blank=True, default="")
    question = models.TextField()
    answer = models.TextField()
    sources = models.JSONField(default=list)
    rating = models.SmallIntegerField(choices=[(1, "Good"), (-1, "Bad")])
    comment = models.TextField(blank=True, default="")
    origin = models.CharField(max_length=20, default="api")  # api / playground
    key = models.ForeignKey(EndpointKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{'+' if self.rating > 0 else '-'} {self.question[:40]}"
