"""Embeddings from the real bundled MiniLM: meaning, not spelling, makes vectors close."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.vectorstore import DEFAULT_MODEL, EmbeddingModelError, load_embedder
from pipelines.vectorstore.embed import bundled_model_path, resolve_model


def test_related_pair_is_closer_than_unrelated_pair(embedder):
    a, b, c = embedder.encode(
        [
            "How do I reset my password?",
            "Steps to recover access when you forgot your login credentials",
            "The tomato harvest was late this year because of the cold spring",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_vectors_are_unit_length_and_384_wide(embedder):
    vectors = embedder.encode(["one", "two three"], batch_size=1)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.dimension == 384 and embedder.name == DEFAULT_MODEL


def test_token_counter_uses_the_models_word_pieces(embedder):
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("antidisestablishmentarianism") > 3
    assert embedder.max_tokens == 254  # max_seq_length 256 minus [CLS] and [SEP]


def test_aliases_and_the_bundled_path_mean_the_same_model():
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", str(bundled_model_path())):
        source = resolve_model(name)
        assert source.name == DEFAULT_MODEL and source.offline


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbeddingModelError, match="Cannot load the embedding model"):
        load_embedder(str(tmp_path / "no-such-model"))
    with pytest.raises(EmbeddingModelError):
        load_embedder("someone/model-that-is-not-cached")
