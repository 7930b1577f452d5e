"""Pipelines and their immutable, numbered versions.

A pipeline is a name in a workspace; its graph lives in versions. Every save appends a
version (1, 2, 3…) and nothing ever edits one, so a run can point at the exact graph it
executed and "restore" is just a new version copying an old graph.

Deleting a pipeline is soft (``deleted_at``): runs and published endpoints keep pointing at
the versions they were built from, and a hard delete would have to cascade into them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from llmops.accounts.models import WorkspaceOwned, WorkspaceQuerySet


class PipelineQuerySet(WorkspaceQuerySet):
    def alive(self) -> PipelineQuerySet:
        return self.filter(deleted_at__isnull=True)

    def for_user(self, user) -> PipelineQuerySet:
        """Pipelines of the user's workspaces, without deleted ones."""
        return super().for_user(user).alive()


class Pipeline(WorkspaceOwned):
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = PipelineQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["workspace", "deleted_at", "-updated_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> PipelineVersion | None:
        return self.versions.order_by("-number").first()


class VersionImmutableError(Exception):
    pass


class PipelineVersion(WorkspaceOwned):
    """One saved graph. Append-only: ``save`` refuses to update an existing row."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    message = models.CharField(max_length=200, blank=True, default="")
    # Summary of validate_graph() at save time: {"ok": bool, "errors": n, "warnings": n}.
    validation = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "number"], name="uniq_pipeline_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.pipeline} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise VersionImmutableError("pipeline versions are immutable; save a new version instead")
        super().save(*args, **kwargs)

    @property
    def node_count(self) -> int:
        nodes = self.graph.get("nodes") if isinstance(self.graph, dict) else None
        return len(nodes) if isinstance(nodes, list) else 0
