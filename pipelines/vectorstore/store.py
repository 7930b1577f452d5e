"""A vector index on disk: one folder, three files, all in open formats.

    index.faiss   the FAISS index (faiss.write_index), vectors under their chunk ids
    chunks.jsonl  one chunk per line: id, document id and name, position, text, metadata
    meta.json     model, dimension, metric, index type, chunking, documents (id -> sha256)

A folder is written once and never changed (a new version is a new folder), so a reader may
cache it by path and a half-written version is never seen: ``save`` writes to a temporary
folder and renames it into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.vectorstore import faiss_index

FORMAT = "llmops.faiss/1"
INDEX_FILE, CHUNKS_FILE, META_FILE = "index.faiss", "chunks.jsonl", "meta.json"


class IndexMismatch(ValueError):
    """A query or an update made with another model, dimension or metric than the index's."""


@dataclass
class StoreSettings:
    model: str
    dimension: int
    metric: str = "cosine"
    index_type: str = "auto"  # what was asked: auto/flat/hnsw/ivf
    chunk_size: int = 256  # tokens, as applied (capped by the model's input length)
    chunk_overlap: int = 32

    def same_build(self, other: StoreSettings) -> bool:
        """Whether vectors made under ``other`` can be reused here (else: rebuild)."""
        return (self.model, self.dimension, self.metric, self.chunk_size, self.chunk_overlap) == (
            other.model,
            other.dimension,
            other.metric,
            other.chunk_size,
            other.chunk_overlap,
        )


@dataclass
class VectorStore:
    settings: StoreSettings
    index: Any = None
    chunks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> chunk record
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # str(doc id) -> sha256, name
    next_id: int = 1
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. collection id

    @property
    def count(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    @property
    def index_kind(self) -> str:
        return "empty" if self.index is None else faiss_index.kind_of(self.index)

    # --- changes -------------------------------------------------------------------------
    def add(self, records: list[dict[str, Any]], vectors) -> None:
        """Add chunk records (without ids) and their vectors; ids are assigned here."""
        if len(records) != len(vectors):
            raise ValueError("one vector per chunk record")
        if len(vectors) and vectors.shape[1] != self.settings.dimension:
            raise IndexMismatch(
                f"vectors of dimension {vectors.shape[1]} for an index of dimension {self.settings.dimension}"
            )
        ids = list(range(self.next_id, self.next_id + len(records)))
        self.next_id += len(records)
        for chunk_id, record in zip(ids, records, strict=True):
            self.chunks[chunk_id] = {"id": chunk_id, **record}
        wanted = self._wanted_kind(self.count + len(ids))
        if self.index is None or (wanted != self.index_kind and self._restructure_allowed()):
            self._rebuild(wanted, extra_ids=ids, extra_vectors=vectors)
        else:
            faiss_index.add(self.index, vectors, ids)

    def remove_documents(self, document_ids) -> int:
        """Remove every chunk of these documents; returns how many vectors were removed."""
        wanted = {str(d) for d in document_ids}
        ids = [cid for cid, rec in self.chunks.items() if str(rec["document_id"]) in wanted]
        if ids and self.index is not None:
            self.index = faiss_index.remove(self.index, ids, metric=self.settings.metric)
        for chunk_id in ids:
            del self.chunks[chunk_id]
        for doc_id in wanted:
            self.documents.pop(doc_id, None)
        if self.index is not None and self._restructure_allowed():
            wanted_kind = self._wanted_kind(self.count)
            if wanted_kind != self.index_kind:
                self._rebuild(wanted_kind)
        return len(ids)

    def restructure(self) -> None:
        """Rebuild into the structure the settings ask for now (from stored vectors)."""
        if self.index is not None:
            kind = self._wanted_kind(self.count)
            if kind != self.index_kind:
                self._rebuild(kind)

    def _wanted_kind(self, count: int) -> str:
        requested = self.settings.index_type
        kind = faiss_index.choose_index_type(count) if requested == "auto" else requested
        if kind == "ivf" and count < faiss_index.IVF_MIN_POINTS_PER_LIST:
            kind = "flat"  # too few vectors to train clusters; an explicit IVF starts flat
        return kind

    def _restructure_allowed(self) -> bool:
        return self.settings.index_type in ("auto", "ivf")

    def _rebuild(self, kind: str, extra_ids=(), extra_vectors=None) -> None:
        import numpy as np

        if self.index is not None:
            ids, vectors = faiss_index.all_vectors(self.index)
        else:
            ids, vectors = np.zeros(0, "int64"), np.zeros((0, self.settings.dimension), "float32")
        if extra_vectors is not None and len(extra_vectors):
            ids = np.concatenate([ids, np.asarray(extra_ids, dtype="int64")])
            vectors = np.concatenate([vectors, np.asarray(extra_vectors, dtype="float32")])
        self.index = faiss_index.build(vectors, ids, index_type=kind, metric=self.settings.metric)

    # --- reads ---------------------------------------------------------------------------
    def search_vectors(self, queries, k: int) -> list[list[tuple[dict[str, Any], float]]]:
        """Top-k (chunk record, score) per query vector; larger scores are closer."""
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.shape[1] != self.settings.dimension:
            raise IndexMismatch(
                f"query vectors have dimension {queries.shape[1]}; this index was "
                f"built with {self.settings.model!r} (dimension {self.settings.dimension})"
            )
        if not self.count:
            return [[] for _ in range(len(queries))]
        scores, ids = faiss_index.search(self.index, queries, k, metric=self.settings.metric)
        return [
            [
                (self.chunks[int(i)], float(s))
                for s, i in zip(row_s, row_i, strict=True)
                if i >= 0 and int(i) in self.chunks
            ]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def search(self, query: str, embedder, k: int = 5) -> list[tuple[dict[str, Any], float]]:
        """Embed ``query`` with ``embedder`` (which must be the index's model) and search."""
        check_model(self.settings, embedder.name, embedder.dimension)
        vector = embedder.encode([query], normalize=self.settings.metric == "cosine")
        return self.search_vectors(vector, k)[0]

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.settings.model,
            "dimension": self.settings.dimension,
            "metric": self.settings.metric,
            "index_type": self.index_kind,
            "requested_index_type": self.settings.index_type,
            "chunk_size": self.settings.chunk_size,
            "chunk_overlap": self.settings.chunk_overlap,
            "normalized": self.settings.metric == "cosine",
            "count": self.count,
            "next_id": self.next_id,
            "version": self.version,
            "documents": self.documents,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.extra,
        }

    # --- disk ----------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the three files into ``folder`` (which must not exist yet), atomically."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            if self.index is not None:
                faiss_index.write(self.index, tmp / INDEX_FILE)
            with (tmp / CHUNKS_FILE).open("w", encoding="utf-8") as out:
                for chunk_id in sorted(self.chunks):
                    out.write(json.dumps(self.chunks[chunk_id], ensure_ascii=False) + "\n")
            (tmp / META_FILE).write_text(json.dumps(self.meta(), indent=1, ensure_ascii=False))
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: Path) -> VectorStore:
        folder = Path(folder)
        meta = read_meta(folder)
        settings = StoreSettings(
            model=meta["model"],
            dimension=int(meta["dimension"]),
            metric=meta["metric"],
            index_type=meta.get("requested_index_type", meta["index_type"]),
            chunk_size=int(meta["chunk_size"]),
            chunk_overlap=int(meta["chunk_overlap"]),
        )
        chunks: dict[int, dict[str, Any]] = {}
        with (folder / CHUNKS_FILE).open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    chunks[int(record["id"])] = record
        index = faiss_index.read(folder / INDEX_FILE) if (folder / INDEX_FILE).exists() else None
        known = {
            "format",
            "model",
            "dimension",
            "metric",
            "index_type",
            "requested_index_type",
            "chunk_size",
            "chunk_overlap",
            "normalized",
            "count",
            "next_id",
            "version",
            "documents",
            "updated_at",
        }
        return cls(
            settings=settings,
            index=index,
            chunks=chunks,
            documents=dict(meta.get("documents", {})),
            next_id=int(meta.get("next_id", 1)),
            version=int(meta.get("version", 0)),
            extra={k: v for k, v in meta.items() if k not in known},
        )


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"{path}: not a vector index folder ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown index format {meta.get('format')!r}")
    return meta


def check_model(settings: StoreSettings, model: str, dimension: int | None = None) -> None:
    if model != settings.model or (dimension is not None and dimension != settings.dimension):
        raise IndexMismatch(
            f"This index was built with the embedding model {settings.model!r} "
            f"({settings.dimension} dimensions); a query embedded with {model!r} "
            f"({dimension or '?'} dimensions) cannot be compared with it. Search with {settings.model!r} "
            "or rebuild the index with the new model."
        )
