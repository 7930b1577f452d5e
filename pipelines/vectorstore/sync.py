"""Bring a vector index up to date with a set of documents: the one routine behind the
``vectorize.faiss`` node and the "follow collection" task.

Incremental by design: with a previous version built by the same model and chunking, only
documents that are new (or whose content hash changed) are parsed and embedded, and vectors of
documents that are gone are removed by id. Another model, dimension, metric or chunking makes
every old vector useless, so the index is rebuilt from scratch (the report says why).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.docs import DocumentError, Parsed, chunk_text, parse, sniff
from pipelines.vectorstore.embed import DEFAULT_MODEL, SPECIAL_TOKENS, Embedder, get_embedder
from pipelines.vectorstore.store import StoreSettings, VectorStore

Progress = Callable[..., None]  # progress(done, total, message, **metrics), like NodeContext


@dataclass
class SourceDocument:
    id: int
    name: str
    sha256: str
    kind: str = ""  # pdf/docx/... as sniffed at upload; sniffed again when empty
    path: str | None = None  # the stored original file
    parsed_path: str | None = None  # the Parsed JSON written at upload, when there is one

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceDocument:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclass
class BuildSettings:
    model: str = DEFAULT_MODEL
    chunk_size: int = 256
    chunk_overlap: int = 32
    index_type: str = "auto"
    metric: str = "cosine"
    batch_size: int = 64


@dataclass
class SyncReport:
    version: int
    model: str
    dimension: int
    index_type: str
    count: int  # vectors in the index
    documents: int  # documents in the index
    chunk_size: int
    chunk_overlap: int
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # document id -> reason
    chunks_added: int = 0
    rebuilt: str = ""  # why the previous version was not reused ("" when it was, or none existed)
    reused_previous: bool = False  # built on top of previous_dir: its chunk ids carry over
    unchanged: bool = False  # nothing to do; with skip_if_unchanged nothing was written
    seconds: float = 0.0
    embed_seconds: float = 0.0
    chunks_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = {str(k): v for k, v in self.failed.items()}
        return data


def sync_index(
    *,
    documents: list[SourceDocument],
    settings: BuildSettings,
    out_dir: Path,
    previous_dir: Path | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
    add_new: bool = True,
    embedder: Embedder | None = None,
    extra_meta: dict[str, Any] | None = None,
    skip_if_unchanged: bool = False,
) -> SyncReport:
    """Write the up-to-date index to ``out_dir`` (a new folder) and report what changed.

    With ``skip_if_unchanged``, a previous version that already matches the documents is left
    as it is and nothing is written (``report.unchanged``): a burst of uploads queues several
    syncs, and all but the first find nothing to do."""
    started = time.perf_counter()
    progress = progress or _no_progress
    check_cancelled = check_cancelled or (lambda: None)
    progress(0, 1, "Loading the embedding model")
    embedder = embedder or get_embedder(settings.model, device)
    store, rebuilt, notes = _starting_store(embedder, settings, previous_dir)
    reused = previous_dir is not None and not rebuilt and store.version > 1
    current = {str(d.id): d for d in documents}
    stale = [
        doc_id
        for doc_id, info in store.documents.items()
        if doc_id not in current or current[doc_id].sha256 != info.get("sha256")
    ]
    store.remove_documents(stale)
    pending = [d for d in documents if str(d.id) not in store.documents] if add_new else []
    unchanged = reused and not stale and not pending and not any(n.startswith("Index type") for n in notes)
    records, failed = _chunk_documents(pending, store, embedder, progress, check_cancelled)
    embed_seconds = _embed_into(store, records, embedder, settings.batch_size, progress, check_cancelled)
    store.extra.update(extra_meta or {})
    if not (unchanged and skip_if_unchanged):
        store.save(Path(out_dir))
    report = SyncReport(
        version=store.version,
        model=store.settings.model,
        dimension=store.settings.dimension,
        index_type=store.index_kind,
        count=store.count,
        documents=len(store.documents),
        chunk_size=store.settings.chunk_size,
        chunk_overlap=store.settings.chunk_overlap,
        added=[d.id for d in pending if d.id not in failed],
        removed=[int(x) for x in stale if x.isdigit()],
        failed=failed,
        chunks_added=len(records),
        rebuilt=rebuilt,
        notes=notes,
        reused_previous=reused,
        unchanged=unchanged,
        seconds=round(time.perf_counter() - started, 3),
        embed_seconds=round(embed_seconds, 3),
        chunks_per_s=round(len(records) / embed_seconds, 1) if embed_seconds > 0 else 0.0,
    )
    progress(
        1,
        1,
        f"Index ready: {report.count} chunks from {report.documents} documents",
        chunks=report.count,
        documents=report.documents,
    )
    return report


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


def _starting_store(
    embedder: Embedder, settings: BuildSettings, previous_dir: Path | None
) -> tuple[VectorStore, str, list[str]]:
    notes: list[str] = []
    chunk_size = min(settings.chunk_size, embedder.max_tokens)
    # The model's limit counts [CLS]/[SEP]: a request of exactly max_seq_length is met silently.
    if settings.chunk_size > embedder.max_tokens + SPECIAL_TOKENS:
        notes.append(
            f"Chunk size lowered from {settings.chunk_size} to {chunk_size} tokens: "
            f"{embedder.name} reads at most {embedder.max_tokens} tokens per passage."
        )
    wanted = StoreSettings(
        model=embedder.name,
        dimension=embedder.dimension,
        metric=settings.metric,
        index_type=settings.index_type,
        chunk_size=chunk_size,
        chunk_overlap=max(0, min(settings.chunk_overlap, chunk_size - 1)),
    )
    if previous_dir is None or not (Path(previous_dir) / "meta.json").exists():
        return VectorStore(settings=wanted, version=1), "", notes
    try:
        previous = VectorStore.load(Path(previous_dir))
    except (OSError, ValueError) as exc:
        return (
            VectorStore(settings=wanted, version=1),
            f"the previous version could not be read ({exc})",
            notes,
        )
    if not previous.settings.same_build(wanted):
        reason = _difference(previous.settings, wanted)
        return VectorStore(settings=wanted, version=previous.version + 1), reason, notes
    previous.version += 1
    if previous.settings.index_type != wanted.index_type:
        previous.settings.index_type = wanted.index_type
        previous.restructure()
        notes.append(f"Index type changed to {wanted.index_type}: rebuilt from the stored vectors.")
    return previous, "", notes


def _difference(old: StoreSettings, new: StoreSettings) -> str:
    for name in ("model", "dimension", "metric", "chunk_size", "chunk_overlap"):
        if getattr(old, name) != getattr(new, name):
            return f"{name.replace('_', ' ')} changed from {getattr(old, name)} to {getattr(new, name)}"
    return "settings changed"


def load_parsed(document: SourceDocument) -> Parsed:
    """The document's clean text: the upload's parse when stored, else parsed now."""
    if document.parsed_path and Path(document.parsed_path).exists():
        return Parsed.from_json(json.loads(Path(document.parsed_path).read_text(encoding="utf-8")))
    if not document.path:
        raise DocumentError("The document has no stored file.")
    try:
        data = Path(document.path).read_bytes()
    except OSError as exc:
        raise DocumentError(f"The stored file cannot be read ({exc.strerror}).") from exc
    kind = document.kind or sniff(data, document.name).kind
    return parse(data, kind)


def _chunk_documents(pending, store, embedder, progress, check_cancelled):
    records: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    for done, document in enumerate(pending, start=1):
        check_cancelled()
        try:
            parsed = load_parsed(document)
            pieces = chunk_text(
                parsed.text,
                chunk_size=store.settings.chunk_size,
                overlap=store.settings.chunk_overlap,
                token_counter=embedder.count_tokens,
                structure=parsed.structure,
            )
        except DocumentError as exc:
            failed[document.id] = str(exc)
            continue
        if not pieces:
            failed[document.id] = "No text was found in the document."
            continue
        for piece in pieces:
            metadata = {"start": piece.start, "end": piece.end, "heading": piece.heading}
            if parsed.pages:
                metadata["page"] = parsed.page_at(piece.start)
                last = parsed.page_at(max(piece.start, piece.end - 1))
                if last != metadata["page"]:
                    metadata["page_end"] = last
            records.append(
                {
                    "document_id": document.id,
                    "document": document.name,
                    "position": piece.position,
                    "text": piece.text,
                    "metadata": metadata,
                }
            )
        store.documents[str(document.id)] = {
            "sha256": document.sha256,
            "name": document.name,
            "chunks": len(pieces),
        }
        progress(
            0.1 * done / len(pending),
            1,
            f"Parsed {done}/{len(pending)} documents",
            documents_done=done,
            documents_total=len(pending),
        )
    return records, failed


def _embed_into(store, records, embedder, batch_size, progress, check_cancelled) -> float:
    """Embed the records' texts and add them to the store; returns the seconds spent embedding."""
    import numpy as np

    if not records:
        return 0.0
    total = len(records)
    # Longest first, as SentenceTransformer.encode orders a list itself: each batch pads to
    # similar lengths, and slicing the sorted list keeps that property across our batches.
    order = sorted(range(total), key=lambda i: -len(records[i]["text"]))
    vectors = np.zeros((total, store.settings.dimension), dtype="float32")
    normalize = store.settings.metric == "cosine"
    started = time.perf_counter()
    for begin in range(0, total, batch_size):
        check_cancelled()
        rows = order[begin : begin + batch_size]
        vectors[rows] = embedder.encode(
            [records[i]["text"] for i in rows], batch_size=batch_size, normalize=normalize
        )
        done = min(begin + batch_size, total)
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        progress(
            0.1 + 0.88 * done / total,
            1,
            f"Embedded {done}/{total} chunks",
            chunks_done=done,
            chunks_total=total,
            chunks_per_s=round(rate, 1),
            eta_s=round((total - done) / rate, 1) if rate else None,
        )
    seconds = time.perf_counter() - started
    store.add(records, vectors)
    return seconds
