"""Retrieval for a service: one embedding call and one FAISS search for a whole batch of
questions, and adapter routing by description embeddings (same embedder, no extra model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.vectorstore.embed import get_embedder
from pipelines.vectorstore.store import VectorStore, check_model


def source_of(record: dict[str, Any], score: float) -> dict[str, Any]:
    """The public shape of a retrieved chunk: {document, chunk, score, text} plus where it is."""
    meta = record.get("metadata") or {}
    out = {
        "document": record.get("document") or str(record.get("document_id", "")),
        "document_id": record.get("document_id"),
        "chunk": record.get("id"),
        "position": record.get("position"),
        "score": round(float(score), 4),
        "text": record.get("text", ""),
    }
    for key in ("page", "heading"):
        if meta.get(key) not in (None, ""):
            out[key] = meta[key]
    return out


class Retriever:
    def __init__(self, folder: Path, *, device: str = "cpu"):
        self.store = VectorStore.load(Path(folder))
        self.embedder = get_embedder(self.store.settings.model, device)
        check_model(self.store.settings, self.embedder.name, self.embedder.dimension)
        self.cosine = self.store.settings.metric == "cosine"

    def embed(self, texts: list[str], *, normalize: bool | None = None):
        return self.embedder.encode(texts, normalize=self.cosine if normalize is None else normalize)

    def search(self, vectors, *, k: int, threshold: float = 0.0) -> list[list[dict[str, Any]]]:
        """Top-k sources per query vector, closest first; below ``threshold`` left out."""
        rows = self.store.search_vectors(vectors, max(1, k))
        return [
            [source_of(record, score) for record, score in row if threshold <= 0 or score >= threshold]
            for row in rows
        ]

    def count_tokens(self, text: str) -> int:
        return self.embedder.count_tokens(text)


class AdapterRouter:
    """Picks, for a question, the adapter whose description is closest in meaning."""

    def __init__(self, retriever: Retriever, descriptions: dict[str, str]):
        self.names = [name for name, text in descriptions.items() if text.strip()]
        self.vectors = (
            retriever.embed([descriptions[n] for n in self.names], normalize=True) if self.names else None
        )

    def choose(self, query_vector) -> tuple[str | None, float | None]:
        """(adapter name, cosine similarity); (None, None) when no adapter has a description."""
        if self.vectors is None:
            return None, None
        import numpy as np

        vector = np.asarray(query_vector, dtype="float32").reshape(-1)
        norm = float(np.linalg.norm(vector)) or 1.0
        scores = self.vectors @ (vector / norm)
        best = int(np.argmax(scores))
        return self.names[best], round(float(scores[best]), 4)
