"""FAISS index kinds: ids survive add/remove, auto choice by size, rebuild without re-embedding."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.vectorstore import faiss_index


def test_auto_choice_by_size():
    assert faiss_index.choose_index_type(0) == "flat"
    assert faiss_index.choose_index_type(9_999) == "flat"
    assert faiss_index.choose_index_type(10_000) == "hnsw"
    assert faiss_index.choose_index_type(99_999) == "hnsw"
    assert faiss_index.choose_index_type(100_000) == "ivf"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_ids_search_remove_and_readback(kind, random_vectors, tmp_path):
    vectors = random_vectors(400)
    ids = np.arange(1000, 1400)
    index = faiss_index.build(vectors, ids, index_type=kind, metric="cosine")
    assert faiss_index.kind_of(index) == kind
    scores, found = faiss_index.search(index, vectors[:3], 1, metric="cosine")
    if kind != "ivf":  # IVF is approximate by design; exact for the others
        assert found[:, 0].tolist() == [1000, 1001, 1002]
        assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    index = faiss_index.remove(index, [1000, 1001], metric="cosine")
    assert index.ntotal == 398
    _, found = faiss_index.search(index, vectors[:1], 5, metric="cosine")
    assert 1000 not in found[0].tolist()
    kept_ids, kept = faiss_index.all_vectors(index)
    assert sorted(kept_ids.tolist()) == list(range(1002, 1400))
    order = np.argsort(kept_ids)
    assert np.allclose(kept[order], vectors[2:], atol=1e-6)
    faiss_index.write(index, tmp_path / "x.faiss")
    again = faiss_index.read(tmp_path / "x.faiss")
    assert again.ntotal == 398 and faiss_index.kind_of(again) == kind


def test_l2_scores_are_negated_distances(random_vectors):
    vectors = random_vectors(20)
    index = faiss_index.build(vectors, np.arange(20), index_type="flat", metric="l2")
    scores, found = faiss_index.search(index, vectors[3:4] * 1.0, 3, metric="l2")
    assert found[0, 0] == 3 and scores[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert scores[0, 1] < scores[0, 0]


def test_ivf_needs_enough_vectors(random_vectors):
    with pytest.raises(ValueError, match="at least"):
        faiss_index.build(random_vectors(10), np.arange(10), index_type="ivf", metric="cosine")
