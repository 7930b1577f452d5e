"""Document collections, their documents, and the vector indexes built from them.

Files live under MEDIA_ROOT with names this code makes up (a UUID and the extension of the
sniffed kind): the name the user gave is display text only, so it can never choose where a
file lands. An index's files are a folder per version (FAISS index, chunks, meta); the Chunk
table mirrors the current version's chunks so the web can show and filter passages without
loading FAISS, which it may not import.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from llmops.accounts.models import WorkspaceOwned


class Collection(WorkspaceOwned):
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.name


class DocumentState(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    PARSED = "parsed", "Parsed"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Failed"


class Document(WorkspaceOwned):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255, help_text="The uploaded file name; display only.")
    storage_name = models.CharField(max_length=64, unique=True, help_text="UUID-based file name on disk.")
    kind = models.CharField(
        max_length=16, help_text="pdf, docx, html, markdown, text, csv or jsonl (sniffed)."
    )
    content_type = models.CharField(max_length=120)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=DocumentState.choices, default=DocumentState.UPLOADED)
    error = models.TextField(blank=True, default="", help_text="Why the document failed, for the user.")
    note = models.TextField(blank=True, default="", help_text="Warnings from sniffing/parsing.")
    text_chars = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(null=True, blank=True)
    title = models.CharField(max_length=200, blank=True, default="")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "sha256"], name="uniq_document_content_in_collection"
            )
        ]
        indexes = [models.Index(fields=["collection", "state"])]

    def __str__(self) -> str:
        return self.name

    @property
    def file_relpath(self) -> str:
        return f"knowledge/ws{self.workspace_id}/c{self.collection_id}/{self.storage_name}"

    @property
    def parsed_relpath(self) -> str:
        return f"{self.file_relpath}.parsed.json"


class IndexStatus(models.TextChoices):
    EMPTY = "empty", "Not built yet"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class VectorIndex(WorkspaceOwned):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="indexes")
    name = models.CharField(max_length=120)
    model_name = models.CharField(max_length=500)
    dimension = models.PositiveIntegerField(null=True, blank=True)
    index_type = models.CharField(max_length=8, default="auto", help_text="Asked for: auto/flat/hnsw/ivf.")
    built_type = models.CharField(max_length=8, blank=True, default="", help_text="What auto chose.")
    metric = models.CharField(max_length=8, default="cosine")
    chunk_size = models.PositiveIntegerField(default=256)
    chunk_overlap = models.PositiveIntegerField(default=32)
    batch_size = models.PositiveIntegerField(default=64)
    follow_collection = models.BooleanField(
        default=True, help_text="Index new uploads automatically, incrementally."
    )
    path = models.CharField(
        max_length=500, blank=True, default="", help_text="Current version folder, under MEDIA_ROOT."
    )
    version = models.PositiveIntegerField(default=0)
    vectors = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=IndexStatus.choices, default=IndexStatus.EMPTY)
    progress = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=300, blank=True, default="")
    error = models.TextField(blank=True, default="")
    # Set when a sync task is queued, cleared when one starts: uploads arriving meanwhile ride on
    # the queued task instead of queueing one each (a batch of 100 files is one sync, not 100).
    sync_pending = models.BooleanField(default=False)
    sync_requested_at = models.DateTimeField(null=True, blank=True)
    artifact_key = models.CharField(
        max_length=128, blank=True, default="", help_text="Engine artifact it came from."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def folder_relpath(self) -> str:
        return f"knowledge/ws{self.workspace_id}/indexes/{self.pk}"


class Chunk(WorkspaceOwned):
    index = models.ForeignKey(VectorIndex, on_delete=models.CASCADE, related_name="chunks")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField(help_text="Order within its document, from 0.")
    vector_id = models.BigIntegerField(help_text="The id of its vector in the FAISS index.")
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["index", "vector_id"], name="uniq_chunk_vector_in_index")
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
