"""Validating a 500-node graph: absolute time and ratio against references run in the same process.

    .venv/bin/python bench/bench_validate.py [--nodes 500] [--repeat 20]

The graph repeats a 10-node block of real kinds (documents -> index -> RAG <- quantize <- model,
dataset -> LoRA -> evaluate, RAG -> API), with diamonds (the model feeds train, quantize and
evaluate). References: a JSON round trip of the same graph (json.dumps + json.loads) and a
pydantic parse of its shape only (Graph.model_validate). Goal: well under a second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.graph import Graph  # noqa: E402
from pipelines.validation import validate_graph  # noqa: E402

BLOCK = [
    ("docs", "source.documents", {"collection": 1}),
    ("index", "vectorize.faiss", {"chunk_size": 256, "chunk_overlap": 32}),
    ("model", "source.model", {"model": "meta-llama/Llama-2-7b-hf"}),
    ("data", "source.dataset", {"dataset": 1, "format": "instruction"}),
    ("train", "train.lora", {"method": "qlora", "r": 16, "target_modules": ["q_proj", "v_proj"]}),
    ("quant", "quantize", {"method": "bnb_nf4"}),
    ("eval", "evaluate", {"metrics": ["perplexity", "rouge"]}),
    ("rag", "serve.rag", {"top_k": 4}),
    ("api", "publish.api", {"rate_limit_per_minute": 120}),
    ("eval2", "evaluate", {"metrics": ["perplexity"], "compare_baseline": False}),
]
WIRES = [
    ("docs", "documents", "index", "documents"), ("model", "model", "train", "model"),
    ("data", "dataset", "train", "dataset"), ("model", "model", "quant", "model"),
    ("quant", "model", "eval", "model"), ("data", "dataset", "eval", "dataset"),
    ("train", "adapter", "eval", "adapter"), ("quant", "model", "rag", "model"),
    ("index", "index", "rag", "index"), ("train", "adapter", "rag", "adapters"),
    ("rag", "service", "api", "service"), ("model", "model", "eval2", "model"),
    ("data", "dataset", "eval2", "dataset"),
]


def build_graph(n_nodes: int) -> dict:
    nodes, edges = [], []
    for b in range(n_nodes // len(BLOCK)):
        for i, (name, kind, params) in enumerate(BLOCK):
            position = [i * 280, b * 170]
            nodes.append({"id": f"{name}-{b}", "kind": kind, "params": dict(params), "position": position})
        edges += [{"from": [f"{a}-{b}", ap], "to": [f"{c}-{b}", cp]} for a, ap, c, cp in WIRES]
    return {"version": 1, "nodes": nodes, "edges": edges}


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    graph = build_graph(args.nodes)
    report = validate_graph(graph, device="a100-80gb")
    assert report.ok, [i.message for i in report.errors[:5]]
    text = json.dumps(graph)

    validate = timed(lambda: validate_graph(graph, device="a100-80gb"), args.repeat)
    round_trip = timed(lambda: json.loads(json.dumps(graph)), args.repeat)
    parse = timed(lambda: Graph.model_validate(graph), args.repeat)
    validate_text = timed(lambda: validate_graph(text, device="a100-80gb"), args.repeat)

    print(f"graph: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges, {len(text) / 1024:.0f} KB of "
          f"JSON; {len(report.warnings)} warnings, {len(report.estimates)} estimates")
    print(f"validate_graph (dict):        {validate * 1000:8.2f} ms")
    print(f"validate_graph (JSON text):   {validate_text * 1000:8.2f} ms")
    print(f"reference JSON round trip:    {round_trip * 1000:8.2f} ms   ratio {validate / round_trip:6.1f}x")
    print(f"reference pydantic parse:     {parse * 1000:8.2f} ms   ratio {validate / parse:6.1f}x")
    print(f"goal: well under a second -> {'OK' if validate < 0.25 else 'SLOW'} ({validate:.3f} s)")


if __name__ == "__main__":
    main()
