"""Ingestion throughput: chunks per second through the whole vectorize.faiss node (read the
documents, chunk, embed, build and write the FAISS index) against plain
``SentenceTransformer.encode`` of the very same chunk texts, in the same process. Prints the
ratio; the goal is at least 0.85.

    .venv/bin/python bench/bench_ingest.py [--docs 16] [--words 800] [--batch-size 64] [--device cpu]

Documents are Markdown files generated from a fixed seed (headings, paragraphs, sentences of
common words). The embedding model is the bundled all-MiniLM-L6-v2, loaded once before timing
(a worker keeps it loaded between runs); both sides use the same batch size and device.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GOAL = 0.85

WORDS = """
the a of to and in is for on that with as by this from are be at or an it was which can
data model index search document policy report team customer product market price service
system process result value time year month week day number level quality risk cost
budget plan project review approve request support contract invoice payment refund travel
leave office security access password network server storage backup update release
version feature issue change record account
""".split()  # noqa: SIM905 - a word list reads better as text


class BenchContext:
    """The smallest NodeContext: keeps the last progress message, resolves nothing."""

    def __init__(self, workdir: Path, device: str):
        self.node_id, self.run_id, self.workspace_id = "index", 0, 0
        self.workdir, self.device = workdir, device
        self.last = ""

    def progress(self, done, total=None, message="", **metrics):
        self.last = message

    def log(self, message, level="info"):
        pass

    def metric(self, name, value, step=None):
        pass

    def cancelled(self):
        return False

    def check_cancelled(self):
        pass

    def resource(self, kind, ref):
        raise LookupError(kind)


def make_corpus(folder: Path, docs: int, words: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(docs):
        parts, written, section = [f"# Document {n}"], 0, 0
        while written < words:
            if rng.random() < 0.15:
                section += 1
                parts.append(f"## Section {section}")
            sentences = []
            for _ in range(rng.randint(2, 6)):
                length = rng.randint(6, 22)
                sentences.append(" ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + ".")
                written += length
            parts.append(" ".join(sentences))
        (folder / f"doc{n:03d}.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument("--words", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from pipelines.context import ArtifactRef
    from pipelines.nodes.vectorize_faiss.run import run as vectorize
    from pipelines.nodes.vectorize_faiss.spec import SPEC
    from pipelines.types import ArtifactType
    from pipelines.vectorstore import get_embedder

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "docs", args.docs, args.words)
        started = time.perf_counter()
        embedder = get_embedder("all-MiniLM-L6-v2", args.device)
        load_s = time.perf_counter() - started
        embedder.encode(["warm up the kernels"] * 8)  # first-call costs are nobody's throughput
        params = SPEC.params.model_validate({"batch_size": args.batch_size, "chunk_size": args.chunk_size})
        ctx = BenchContext(tmp / "work", args.device)
        inputs = {"documents": ArtifactRef(ArtifactType.DOCUMENTS, tmp / "docs")}

        started = time.perf_counter()
        out = vectorize(ctx, inputs, params)["index"]
        node_s = time.perf_counter() - started
        texts = [json.loads(line)["text"] for line in (out.path / "chunks.jsonl").open(encoding="utf-8")]

        started = time.perf_counter()
        embedder.model.encode(
            texts,
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        plain_s = time.perf_counter() - started

    chunks = len(texts)
    node_rate, plain_rate = chunks / node_s, chunks / plain_s
    ratio = node_rate / plain_rate
    print(
        f"corpus: {args.docs} Markdown documents x ~{args.words} words -> {chunks} chunks "
        f"({args.chunk_size} tokens, batch {args.batch_size}, device {args.device}); "
        f"model load {load_s:.1f} s"
    )
    print(f"vectorize.faiss node (parse, chunk, embed, index): {node_s:7.2f} s  {node_rate:8.1f} chunks/s")
    print(f"plain SentenceTransformer.encode (same chunks):    {plain_s:7.2f} s  {plain_rate:8.1f} chunks/s")
    print(f"ratio node/plain: {ratio:.3f}  (goal >= {GOAL})  {'OK' if ratio >= GOAL else 'BELOW GOAL'}")
    print(f"last progress message: {ctx.last!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
