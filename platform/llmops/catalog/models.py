"""Registered base models and uploaded datasets.

A ``ModelEntry`` records what a model is (architecture, parameter count, dtype, size), read
from its config.json and safetensors headers without loading it; its ``reference`` is what
the ``source.model`` node takes (a hub id or an absolute folder path). The bundled demo model
is not a row: it is always there as "demo".

A ``Dataset`` is an uploaded file, stored under MEDIA_ROOT with a name this code makes up,
plus what parsing it found: format, usable rows, labels, a preview and the row errors.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from llmops.accounts.models import WorkspaceOwned
from pipelines.ml.modelinfo import human_count


class ModelSource(models.TextChoices):
    HUB = "hub", "Hugging Face hub"
    LOCAL = "local", "Local folder"


class ModelStatus(models.TextChoices):
    READY = "ready", "Ready"  # the weights were found and inspected on this machine
    REMOTE = "remote", "Not downloaded yet"  # a hub id not in this machine's cache


class ModelEntry(WorkspaceOwned):
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=10, choices=ModelSource.choices)
    reference = models.CharField(max_length=500, help_text="Hub id or absolute folder path.")
    revision = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.READY)
    status_detail = models.TextField(blank=True, default="")
    architecture = models.CharField(max_length=120, blank=True, default="")
    model_type = models.CharField(max_length=60, blank=True, default="")
    parameters = models.PositiveBigIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=20, blank=True, default="")
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    info = models.JSONField(default=dict, blank=True, help_text="Everything inspect_model_dir found.")
    trust_remote_code = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "reference"], name="uniq_model_reference_in_workspace"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def parameters_human(self) -> str:
        return human_count(self.parameters) if self.parameters else ""


class DatasetFormat(models.TextChoices):
    INSTRUCTION = "instruction", "Instructions (JSONL)"
    CHAT = "chat", "Chat (JSONL)"
    TEXT = "text", "Plain text"
    CLASSIFICATION = "classification", "Labelled (CSV)"


class Dataset(WorkspaceOwned):
    name = models.CharField(max_length=120)
    filename = models.CharField(max_length=255, help_text="The uploaded file name; display only.")
    storage_name = models.CharField(max_length=64, unique=True, help_text="UUID-based file name on disk.")
    format = models.CharField(max_length=20, choices=DatasetFormat.choices)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(default=0, help_text="Usable rows.")
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first row errors: line and reason.")
    labels = models.JSONField(default=list, blank=True)
    preview = models.JSONField(default=list, blank=True, help_text="The first rows, normalised.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def relpath(self) -> str:
        return f"datasets/ws{self.workspace_id}/{self.storage_name}"
