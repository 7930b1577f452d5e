"""Search latency: p50/p95 of top-5 queries on 100,000 random unit vectors (384 dimensions,
all-MiniLM-L6-v2's width), one query at a time as a serve worker answers them, through the
same VectorStore code the search task uses. The query embedding (MiniLM on the same device)
is timed separately. Goal: p95 under 20 ms on CPU for the index search.

    .venv/bin/python bench/bench_search.py [--vectors 100000] [--queries 500] [--type auto]

The index type is what ``auto`` picks at that size (IVF from 100k vectors); ``--type flat``
measures exact search for comparison. Recall@5 against exact search is printed for context
(random vectors are the hardest case for clustering; real embeddings cluster far better).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GOAL_P95_MS = 20.0
DIM = 384


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--type", default="auto", choices=["auto", "flat", "hnsw", "ivf"])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--embed-queries", type=int, default=50)
    args = ap.parse_args()

    import numpy as np

    from pipelines.vectorstore import StoreSettings, VectorStore, faiss_index, get_embedder

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, DIM)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        {"document_id": i // 50, "document": f"doc{i // 50}", "position": i % 50, "text": ""}
        for i in range(args.vectors)
    ]
    store = VectorStore(settings=StoreSettings(model="all-MiniLM-L6-v2", dimension=DIM, index_type=args.type))
    started = time.perf_counter()
    store.add(records, vectors)
    build_s = time.perf_counter() - started

    queries = rng.standard_normal((args.queries, DIM)).astype("float32")
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for q in queries[:20]:  # warm caches
        store.search_vectors(q, args.k)
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        hits = store.search_vectors(q, args.k)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        found.append({r["id"] for r, _ in hits})

    exact = faiss_index.build(vectors, np.arange(1, args.vectors + 1), index_type="flat", metric="cosine")
    _, truth = faiss_index.search(exact, queries, args.k, metric="cosine")
    recall = np.mean([len(f & set(t.tolist())) / args.k for f, t in zip(found, truth, strict=True)])

    embedder = get_embedder("all-MiniLM-L6-v2", "cpu")
    questions = [f"How long does a refund take for order number {n}?" for n in range(args.embed_queries)]
    embedder.encode(questions[:3])
    embed_ms = []
    for question in questions:
        started = time.perf_counter()
        embedder.encode([question])
        embed_ms.append((time.perf_counter() - started) * 1000)

    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    print(f"{args.vectors} vectors x {DIM} dims, index {store.index_kind} (asked: {args.type}), "
          f"built in {build_s:.1f} s")
    print(
        f"top-{args.k} search, {args.queries} single queries: p50 {p50:.2f} ms  p95 {p95:.2f} ms  "
        f"(goal p95 < {GOAL_P95_MS:g} ms)  {'OK' if p95 < GOAL_P95_MS else 'ABOVE GOAL'}"
    )
    print(f"recall@{args.k} against exact search: {recall:.3f}")
    print(
        f"query embedding (MiniLM, cpu, separately): p50 {percentile(embed_ms, 50):.1f} ms  "
        f"p95 {percentile(embed_ms, 95):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
