"""FAISS index construction, ID-mapped add/remove, search and (de)serialisation.

Every vector carries the 64-bit id of its chunk. Flat and HNSW indexes are wrapped in
``IndexIDMap2`` (ids kept beside the vectors); IVF stores ids in its inverted lists itself.
Removal is ``remove_ids`` for Flat and IVF; HNSW cannot delete from its graph, so removing
from it rebuilds the graph from the vectors that stay (no re-embedding).

Cosine similarity is the inner product of unit vectors (the embedder normalises them), so the
"cosine" metric uses ``METRIC_INNER_PRODUCT``; "l2" uses squared Euclidean distance, and its
score is reported negated so that, for both metrics, a larger score means closer.
"""

from __future__ import annotations

import math
from typing import Any

# Size thresholds for index_type="auto". Up to 10k vectors exact search costs < 2 ms per query
# (10k x 384 floats); past that HNSW keeps queries sub-millisecond; from 100k vectors IVF keeps
# memory and build time down (HNSW's graph adds ~M*8 bytes per vector and builds slowly).
FLAT_MAX = 10_000
IVF_MIN = 100_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
IVF_NPROBE = 16
IVF_MIN_POINTS_PER_LIST = 39  # FAISS warns below 39 training points per centroid
IVF_TRAIN_POINTS_PER_LIST = 64  # k-means on 64 points per cluster is plenty, and ~4x faster than 256


def choose_index_type(count: int) -> str:
    if count < FLAT_MAX:
        return "flat"
    if count < IVF_MIN:
        return "hnsw"
    return "ivf"


def ivf_lists(count: int) -> int:
    """Number of IVF clusters: about sqrt(n) (1,000 lists of ~1,000 vectors for a million),
    so that nprobe=16 scans ~1.6% of the vectors; never fewer than 39 vectors per list."""
    return max(1, min(int(math.sqrt(count)), count // IVF_MIN_POINTS_PER_LIST))


def _faiss_metric(metric: str) -> int:
    import faiss

    if metric == "cosine":
        return faiss.METRIC_INNER_PRODUCT
    if metric == "l2":
        return faiss.METRIC_L2
    raise ValueError(f"unknown metric {metric!r}: use 'cosine' or 'l2'")


def build(vectors, ids, *, index_type: str, metric: str):
    """A new index of ``index_type`` (flat/hnsw/ivf) holding ``vectors`` under ``ids``."""
    import faiss
    import numpy as np

    dim = vectors.shape[1]
    faiss_metric = _faiss_metric(metric)
    if index_type == "flat":
        base = (
            faiss.IndexFlatIP(dim) if faiss_metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
        )
        index = faiss.IndexIDMap2(base)
    elif index_type == "hnsw":
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss_metric)
        base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        base.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap2(base)
    elif index_type == "ivf":
        index = _build_ivf(vectors, dim, faiss_metric)
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    if len(vectors):
        index.add_with_ids(vectors, np.asarray(ids, dtype="int64"))
    return index


def _build_ivf(vectors, dim: int, faiss_metric: int):
    import faiss
    import numpy as np

    if len(vectors) < IVF_MIN_POINTS_PER_LIST:
        raise ValueError(
            f"an IVF index needs at least {IVF_MIN_POINTS_PER_LIST} vectors to train; "
            "use the flat index for small collections"
        )
    nlist = ivf_lists(len(vectors))
    quantizer = (
        faiss.IndexFlatIP(dim) if faiss_metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
    )
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
    sample = vectors
    wanted = nlist * IVF_TRAIN_POINTS_PER_LIST
    if len(vectors) > wanted:
        rows = np.random.default_rng(0).choice(len(vectors), wanted, replace=False)
        sample = vectors[np.sort(rows)]
    index.train(sample)
    index.nprobe = min(IVF_NPROBE, nlist)
    return index


def kind_of(index) -> str:
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    return "flat"


def all_vectors(index) -> tuple[Any, Any]:
    """(ids, vectors) of everything stored, for rebuilding without re-embedding."""
    import faiss
    import numpy as np

    if isinstance(index, faiss.IndexIDMap):
        ids = faiss.vector_to_array(index.id_map).astype("int64")
        inner = faiss.downcast_index(index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), "float32")
        return ids, np.ascontiguousarray(vectors, dtype="float32")
    ivf = faiss.extract_index_ivf(index)
    invlists, ids_parts, vec_parts = ivf.invlists, [], []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if not size:
            continue
        ids_parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * ivf.code_size).copy()
        vec_parts.append(codes.view("float32").reshape(size, ivf.d))
    if not ids_parts:
        return np.zeros(0, "int64"), np.zeros((0, ivf.d), "float32")
    return np.concatenate(ids_parts).astype("int64"), np.ascontiguousarray(np.concatenate(vec_parts))


def add(index, vectors, ids) -> None:
    import numpy as np

    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype="float32"), np.asarray(ids, dtype="int64"))


def remove(index, ids, *, metric: str):
    """Remove ``ids``; returns the index to keep using (a rebuilt one for HNSW)."""
    import numpy as np

    ids = np.asarray(sorted(set(int(i) for i in ids)), dtype="int64")
    if not len(ids):
        return index
    if kind_of(index) == "hnsw":
        kept_ids, vectors = all_vectors(index)
        keep = ~np.isin(kept_ids, ids)
        return build(vectors[keep], kept_ids[keep], index_type="hnsw", metric=metric)
    index.remove_ids(ids)
    return index


def search(index, queries, k: int, *, metric: str) -> tuple[Any, Any]:
    """(scores, ids) arrays of shape (n_queries, k); missing results have id -1.

    For "l2" the score is minus the squared distance, so larger always means closer."""
    import numpy as np

    k = max(1, min(int(k), max(1, index.ntotal)))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype="float32"), k)
    if metric == "l2":
        scores = -scores
    return scores, ids


def write(index, path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read(path):
    import faiss

    index = faiss.read_index(str(path))
    if kind_of(index) == "ivf":
        faiss.extract_index_ivf(index).nprobe = min(IVF_NPROBE, faiss.extract_index_ivf(index).nlist)
    return index
