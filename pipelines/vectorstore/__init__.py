"""Embeddings and FAISS indexes on disk. Heavy libraries (torch, faiss, sentence-transformers)
are imported inside functions only, so importing this package is cheap.

    load_embedder(name, device)         -> Embedder (encode, count_tokens, dimension)
    sync_index(documents=..., ...)      -> SyncReport; writes index.faiss + chunks.jsonl + meta.json
    VectorStore.load(folder).search(q, embedder, k)
    search_folder(folder, query, k)     cached search for serve workers
"""

from __future__ import annotations

from pipelines.vectorstore.embed import (
    DEFAULT_MODEL,
    Embedder,
    EmbeddingModelError,
    get_embedder,
    load_embedder,
)
from pipelines.vectorstore.search import search_folder
from pipelines.vectorstore.store import IndexMismatch, StoreSettings, VectorStore, read_meta
from pipelines.vectorstore.sync import BuildSettings, SourceDocument, SyncReport, load_parsed, sync_index

__all__ = [
    "DEFAULT_MODEL",
    "BuildSettings",
    "Embedder",
    "EmbeddingModelError",
    "IndexMismatch",
    "SourceDocument",
    "StoreSettings",
    "SyncReport",
    "VectorStore",
    "get_embedder",
    "load_embedder",
    "load_parsed",
    "read_meta",
    "search_folder",
    "sync_index",
]
