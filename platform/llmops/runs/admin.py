"""Read-mostly admin views of runs, for operators; users work on the run pages."""

from __future__ import annotations

from django.contrib import admin

from llmops.runs.models import Artifact, NodeRun, PipelineRun, RunEvent, WorkerHeartbeat


class NodeRunInline(admin.TabularInline):
    model = NodeRun
    extra = 0
    fields = ("node_id", "kind", "status", "attempt", "worker", "started_at", "finished_at", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("id", "pipeline", "workspace", "status", "created_by", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = ("graph", "last_seq")
    inlines = [NodeRunInline]


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ("run", "seq", "type", "node_id", "created_at")
    list_filter = ("type",)


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "name", "workspace", "size", "created_at")
    search_fields = ("key", "sha256", "name")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "queues", "device", "device_name", "last_seen", "stopped_at")
