"""Runs of saved pipelines: one PipelineRun per press of Run, one NodeRun per node, an
ordered log of RunEvents, the Artifacts nodes produce, and the workers that run them.

The database is the source of truth for every state; Celery only carries ids. A NodeRun's
``status`` moves queued -> running -> succeeded / failed / cancelled (or straight to cached /
skipped / cancelled), and every move is a conditional UPDATE so two processes can never both
win it (see services).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from llmops.accounts.models import WorkspaceOwned


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class NodeStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"
    CACHED = "cached", "Cached"


RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
NODE_DONE = frozenset({NodeStatus.SUCCEEDED, NodeStatus.CACHED})  # outputs are available
NODE_TERMINAL = frozenset(
    {NodeStatus.SUCCEEDED, NodeStatus.CACHED, NodeStatus.FAILED, NodeStatus.CANCELLED, NodeStatus.SKIPPED}
)


class PipelineRun(WorkspaceOwned):
    pipeline = models.ForeignKey("builder.Pipeline", on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey("builder.PipelineVersion", on_delete=models.PROTECT, related_name="runs")
    # The graph as it ran (a copy of the version's, which is immutable, so a run page never
    # needs the builder to explain what happened).
    graph = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    force = models.BooleanField(default=False, help_text="Ignore cached outputs and run every node.")
    error = models.TextField(blank=True, default="")
    # The last event sequence number handed out; incremented under the row lock (events.py).
    last_seq = models.PositiveBigIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"]),
            models.Index(fields=["status"]),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.pipeline_id}"

    @property
    def is_active(self) -> bool:
        return self.status not in RUN_TERMINAL

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class NodeRun(models.Model):
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="node_runs")
    node_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=100)
    label = models.CharField(max_length=200, blank=True, default="")
    queue = models.CharField(max_length=20)
    position = models.PositiveIntegerField(default=0, help_text="Index in topological order.")
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=NodeStatus.choices, default=NodeStatus.QUEUED)
    progress = models.FloatField(null=True, blank=True)  # 0..1, None when unknown
    message = models.CharField(max_length=500, blank=True, default="")
    eta_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Claims so far (each start on a worker is one attempt) and how many of them a dead worker
    # lost; the reaper gives up after LLMOPS_NODE_MAX_ATTEMPTS lost attempts.
    attempt = models.PositiveIntegerField(default=0)
    lost_count = models.PositiveIntegerField(default=0)
    content_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    inputs = models.JSONField(default=dict, help_text="Input port -> artifact ids, in edge order.")
    outputs = models.JSONField(default=dict, help_text="Output port -> artifact id.")
    worker = models.CharField(max_length=200, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    device = models.CharField(max_length=200, blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    # Set when the scheduler released the node to its queue; a task may claim only such a node.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="uniq_node_run")]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class RunEvent(models.Model):
    """One event of a run, numbered 1, 2, 3… per run with no gap (see events.emit)."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=20)
    node_id = models.CharField(max_length=64, null=True, blank=True)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="uniq_run_event_seq")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"


class Artifact(WorkspaceOwned):
    """A node output stored through Django's default storage under ``artifacts/<key>/``.

    Files keep their ecosystem formats (safetensors, FAISS index, JSONL); nothing is pickled.
    A metadata-only artifact (a report, an endpoint) has an empty ``path``.
    """

    key = models.CharField(max_length=64)
    type = models.CharField(max_length=30)
    name = models.CharField(max_length=255, blank=True, default="")  # file or folder name
    path = models.CharField(max_length=500, blank=True, default="")  # storage name
    is_dir = models.BooleanField(default=False)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict)
    node_run = models.ForeignKey(
        NodeRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts"
    )
    port = models.CharField(max_length=64, blank=True, default="")
    # Lineage: the artifacts the producing node read.
    inputs = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="derived")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="uniq_artifact_key")]

    def __str__(self) -> str:
        return f"{self.type} {self.name or self.key[:12]}"


class WorkerHeartbeat(models.Model):
    """The last word from a Celery worker (its main process), written every few seconds."""

    name = models.CharField(max_length=200, unique=True)  # Celery node name, e.g. gpu0@host
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    device = models.CharField(max_length=50, default="cpu")  # "cpu", "cuda:0"...
    device_name = models.CharField(max_length=200, blank=True, default="")
    memory_used = models.PositiveBigIntegerField(null=True, blank=True)  # bytes
    memory_total = models.PositiveBigIntegerField(null=True, blank=True)
    utilization = models.FloatField(null=True, blank=True)  # percent
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
