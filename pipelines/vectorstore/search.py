"""Searching stored indexes from a long-lived process (a serve worker): loaded indexes and
models stay in small LRU caches, so only the first query of an index pays for loading it.

Index folders are immutable (a new version is a new folder), so the folder path is a safe
cache key: a search against a newer version simply loads the newer folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pipelines.vectorstore.embed import get_embedder, resolve_model
from pipelines.vectorstore.store import VectorStore, check_model

MAX_K = 100


class _StoreCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, VectorStore] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, folder: Path) -> VectorStore:
        key = str(Path(folder).resolve())
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        store = VectorStore.load(Path(key))
        with self.lock:
            self.items[key] = store
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return store

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


STORES = _StoreCache(size=int(os.environ.get("LLMOPS_INDEX_CACHE", "8")))


def search_folder(
    folder: Path, query: str, k: int = 5, *, device: str = "cpu", model: str | None = None
) -> dict[str, Any]:
    """Top-k chunks of the index in ``folder`` for ``query``.

    ``model``, when given, is the model the caller expects; another model than the index's is
    an IndexMismatch (a vector from one model means nothing to another)."""
    started = time.perf_counter()
    store = STORES.get(folder)
    if model:
        check_model(store.settings, resolve_model(model).name)
    embedder = get_embedder(store.settings.model, device)
    check_model(store.settings, embedder.name, embedder.dimension)
    loaded = time.perf_counter()
    vector = embedder.encode([query], normalize=store.settings.metric == "cosine")
    embedded = time.perf_counter()
    hits = store.search_vectors(vector, max(1, min(int(k), MAX_K)))[0]
    done = time.perf_counter()
    return {
        "hits": [{**record, "score": round(score, 6)} for record, score in hits],
        "model": store.settings.model,
        "version": store.version,
        "count": store.count,
        "metric": store.settings.metric,
        "load_ms": round((loaded - started) * 1000, 2),
        "embed_ms": round((embedded - loaded) * 1000, 2),
        "search_ms": round((done - embedded) * 1000, 2),
    }
