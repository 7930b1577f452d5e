"""Writes for the catalog: register a model (hub id or local folder), upload a dataset.

Both inspect what they are given right away, in the web process, with plain-Python readers:
a model folder's config.json and safetensors headers (``pipelines.ml.modelinfo``), a dataset
file's rows (``pipelines.ml.datasets``). No torch, no download: a hub model that is not in this
machine's cache is registered as "not downloaded yet" and the worker fetches it on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from llmops.accounts.models import Role, Workspace
from llmops.accounts.selectors import user_can
from llmops.catalog.models import Dataset, ModelEntry, ModelSource, ModelStatus
from llmops.knowledge.models import Collection, DocumentState
from llmops.knowledge.storage import absolute
from pipelines.ml import datasets as ds
from pipelines.ml.modelinfo import ModelFolderError, inspect_model_dir

MAX_NAME = 120
# As source.model's spec: "org/name", or a legacy single name such as "gpt2".
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,100}$")
DATASET_EXTENSIONS = {".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".md", ".text"}
DATASET_FORMATS = ("auto", *ds.FORMATS)


def _require_editor(*, user, workspace: Workspace) -> None:
    if not user_can(user=user, workspace=workspace, role=Role.EDITOR):
        raise PermissionDenied("This needs the editor role in this workspace.")


# --- models ------------------------------------------------------------------------------------


def allowed_local_path(raw: str) -> Path:
    """An absolute folder inside LLMOPS_MODEL_ROOTS (symlinks resolved), else ValidationError."""
    path = Path(raw)
    if not path.is_absolute():
        raise ValidationError({"reference": "Give an absolute folder path such as /models/my-llama."})
    resolved = path.resolve()
    roots = settings.LLMOPS_MODEL_ROOTS
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise ValidationError(
            {
                "reference": "Local models must be inside one of the model folders "
                f"({', '.join(str(r) for r in roots)}): set LLMOPS_MODEL_ROOTS "
                "to allow another one."
            }
        )
    return resolved


def _inspect_local(entry: ModelEntry, folder: Path) -> None:
    try:
        info = inspect_model_dir(folder)
    except ModelFolderError as exc:
        raise ValidationError(
            {"reference": f"This is not a model folder the platform can load: {exc}"}
        ) from exc
    entry.status, entry.status_detail = ModelStatus.READY, f"Inspected at {info.path}"
    entry.architecture, entry.model_type = info.architecture[:120], info.model_type[:60]
    entry.parameters, entry.dtype, entry.size_bytes = info.parameters, info.dtype[:20], info.size_bytes
    entry.context_length = info.max_position_embeddings
    entry.info = info.to_dict()


def cached_hub_folder(hub_id: str, revision: str = "") -> Path | None:
    """The folder of a hub model already in this machine's Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json", revision=revision or None)
    return Path(config).parent if isinstance(config, str) else None


@transaction.atomic
def model_register(
    *,
    user,
    workspace: Workspace,
    reference: str,
    name: str = "",
    revision: str = "",
    trust_remote_code: bool = False,
) -> ModelEntry:
    _require_editor(user=user, workspace=workspace)
    reference, name, revision = (reference or "").strip(), (name or "").strip(), (revision or "").strip()
    if reference == "demo":
        raise ValidationError({"reference": "“demo” is the bundled demo model: it is always available."})
    if len(name) > MAX_NAME:
        raise ValidationError({"name": f"The name is longer than {MAX_NAME} characters."})
    if revision and not REVISION_RE.match(revision):
        raise ValidationError(
            {"revision": "A revision is a branch, tag or commit (letters, digits, . _ / -)."}
        )
    if trust_remote_code and not settings.LLMOPS_ALLOW_TRUST_REMOTE_CODE:
        raise ValidationError(
            {
                "trust_remote_code": "Running a model's own code is not allowed on this "
                "platform; an administrator must enable it."
            }
        )
    entry = ModelEntry(
        workspace=workspace, created_by=user, revision=revision, trust_remote_code=trust_remote_code
    )
    if reference.startswith("/"):
        folder = allowed_local_path(reference)
        entry.source, entry.reference = ModelSource.LOCAL, str(folder)
        _inspect_local(entry, folder)
    elif HUB_ID_RE.match(reference):
        entry.source, entry.reference = ModelSource.HUB, reference
        _inspect_hub(entry)
    else:
        raise ValidationError(
            {"reference": "Give a hub id such as “org/model-name” or an absolute folder path."}
        )
    if ModelEntry.objects.filter(workspace=workspace, reference=entry.reference).exists():
        raise ValidationError({"reference": "This model is already registered in this workspace."})
    entry.name = name or entry.reference.rstrip("/").rsplit("/", 1)[-1][:MAX_NAME]
    entry.save()
    return entry


def _inspect_hub(entry: ModelEntry) -> None:
    folder = cached_hub_folder(entry.reference, entry.revision)
    if folder is None:
        entry.status = ModelStatus.REMOTE
        entry.status_detail = (
            "Not in this machine's cache: a worker with internet access downloads it "
            "(safetensors only) the first time a pipeline uses it."
        )
        return
    _inspect_local(entry, folder)
    entry.status_detail = "Found in this machine's Hugging Face cache."


def model_delete(*, user, entry: ModelEntry) -> None:
    _require_editor(user=user, workspace=entry.workspace)
    entry.delete()


# --- datasets ----------------------------------------------------------------------------------


def max_upload_bytes() -> int:
    return settings.LLMOPS_MAX_UPLOAD_MB * 1024 * 1024


def _read_upload(upload) -> bytes:
    if upload is None:
        raise ValidationError({"file": "Choose a file to upload."})
    if upload.size > max_upload_bytes():
        raise ValidationError(
            {"file": f"The file is larger than the {settings.LLMOPS_MAX_UPLOAD_MB} MB limit."}
        )
    suffix = Path(upload.name or "").suffix.lower()
    if suffix not in DATASET_EXTENSIONS:
        raise ValidationError(
            {
                "file": "Upload a .jsonl, .csv, .tsv or .txt file "
                "(instructions, chat, labelled rows or plain text)."
            }
        )
    return upload.read()


def _store(relpath: str, data: bytes) -> Path:
    """Write under MEDIA_ROOT atomically: a crash never leaves half a file under the final name."""
    target = (Path(settings.MEDIA_ROOT) / relpath).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def dataset_path(dataset: Dataset) -> Path:
    return (Path(settings.MEDIA_ROOT) / dataset.relpath).resolve()


def dataset_upload(*, user, workspace: Workspace, upload, name: str = "", format: str = "auto") -> Dataset:  # noqa: A002
    """Parse and store an uploaded dataset. Malformed rows are kept as errors (line and reason);
    a file without a single usable row is refused."""
    _require_editor(user=user, workspace=workspace)
    if format not in DATASET_FORMATS:
        raise ValidationError({"format": f"Use one of: {', '.join(DATASET_FORMATS)}."})
    data = _read_upload(upload)
    return _dataset_create(
        user=user,
        workspace=workspace,
        data=data,
        filename=Path(upload.name).name[:255],
        name=name,
        fmt=format,
    )


def _dataset_create(
    *, user, workspace: Workspace, data: bytes, filename: str, name: str, fmt: str
) -> Dataset:
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise ValidationError({"name": f"The name is longer than {MAX_NAME} characters."})
    try:
        parsed = ds.parse(data, name=filename, format=fmt)
    except ds.DatasetError as exc:
        raise ValidationError({"file": str(exc)}) from exc
    summary = parsed.summary()
    dataset = Dataset(
        workspace=workspace,
        created_by=user,
        name=name or Path(filename).stem[:MAX_NAME] or "dataset",
        filename=filename,
        storage_name=f"{uuid.uuid4().hex}{Path(filename).suffix.lower()}",
        format=parsed.format,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        rows=len(parsed.rows),
        error_count=parsed.error_count,
        errors=summary["errors"][:200],
        labels=parsed.labels[:1000],
        preview=ds.preview(parsed, 20),
    )
    _store(dataset.relpath, data)
    dataset.save()
    return dataset


def dataset_from_collection(*, user, workspace: Workspace, collection_id: int, name: str = "") -> Dataset:
    """A plain-text dataset (continued pre-training) from a document collection's extracted text:
    one row per paragraph. Documents that failed to parse are left out."""
    _require_editor(user=user, workspace=workspace)
    collection = Collection.objects.filter(pk=collection_id, workspace=workspace).first()
    if collection is None:
        raise ValidationError({"collection": "No such document collection in this workspace."})
    paragraphs: list[str] = []
    for document in collection.documents.exclude(state=DocumentState.FAILED).order_by("id"):
        try:
            text = json.loads(absolute(document.parsed_relpath).read_text(encoding="utf-8"))["text"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not parsed (yet): nothing to take from it
        paragraphs += [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not paragraphs:
        raise ValidationError(
            {"collection": "The collection has no extracted text yet: upload documents first."}
        )
    data = ("\n".join(paragraphs) + "\n").encode("utf-8")
    if len(data) > max_upload_bytes():
        raise ValidationError(
            {"collection": f"The text is larger than the {settings.LLMOPS_MAX_UPLOAD_MB} MB limit."}
        )
    return _dataset_create(
        user=user,
        workspace=workspace,
        data=data,
        filename=f"{collection.name[:80]}.txt",
        name=name or f"{collection.name} (text)",
        fmt="text",
    )


# Datasets shipped with the platform, for the seed's hands-on templates.
SAMPLES = {
    "news": ("news.csv", "News headlines (sample)", "classification"),
    "platform-chat": ("platform_chat.jsonl", "Platform questions, chat (sample)", "chat"),
}


def dataset_create_sample(*, user, workspace: Workspace, sample: str) -> Dataset:
    """Add a shipped sample dataset to the workspace (again: a new copy each time)."""
    if sample not in SAMPLES:
        raise ValidationError({"sample": f"Use one of: {', '.join(SAMPLES)}."})
    _require_editor(user=user, workspace=workspace)
    filename, name, fmt = SAMPLES[sample]
    data = (ds.DATA_DIR / filename).read_bytes()
    return _dataset_create(user=user, workspace=workspace, data=data, filename=filename, name=name, fmt=fmt)


def dataset_delete(*, user, dataset: Dataset) -> None:
    _require_editor(user=user, workspace=dataset.workspace)
    path = dataset_path(dataset)
    dataset.delete()
    path.unlink(missing_ok=True)
