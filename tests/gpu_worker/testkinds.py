"""Test-only node kinds, registered on import. Real worker subprocesses learn them through
``LLMOPS_EXTRA_NODE_MODULES=tests.gpu_worker.testkinds``; the test process imports this module.

All run on the ``cpu`` queue, take a few hundred milliseconds at most unless told to sleep,
and check ``ctx.cancelled()`` while they wait.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.registry import register
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

DATA = ArtifactType.DATASET


class NoParams(BaseModel):
    pass


KINDS = (
    "test.source",
    "test.step",
    "test.join",
    "test.fail",
    "test.crash",
    "test.folder",
    "test.flaky",
    "test.gpustep",
)


class SourceParams(BaseModel):
    text: str = "hello"


class StepParams(BaseModel):
    tag: str = "step"
    steps: int = Field(4, ge=1, le=10_000)
    sleep_s: float = Field(0.0, ge=0, le=120)


class FailParams(BaseModel):
    message: str = "boom"


class FlakyParams(BaseModel):
    marker: str  # a file path: the node fails while it does not exist, creating it


def _read(ref) -> str:
    return ref.path.read_text() if ref is not None else ""


def run_source(ctx, inputs, params):
    out = ctx.workdir / "data.txt"
    out.write_text(params.text)
    ctx.log(f"wrote {len(params.text)} characters")
    return {"data": ArtifactOut(DATA, out, {"chars": len(params.text)})}


def run_step(ctx, inputs, params):
    """Sleep ``sleep_s`` in ``steps`` slices, reporting progress and a falling loss."""
    text = _read(inputs.get("data"))
    for step in range(1, params.steps + 1):
        ctx.check_cancelled()
        time.sleep(params.sleep_s / params.steps)
        ctx.progress(step, params.steps, f"step {step}/{params.steps}", loss=round(1.0 / step, 4), step=step)
    ctx.metric("final_loss", 1.0 / params.steps, step=params.steps)
    out = ctx.workdir / "data.txt"
    out.write_text(f"{text}|{params.tag}")
    return {"data": ArtifactOut(DATA, out, {"tag": params.tag})}


def run_join(ctx, inputs, params):
    out = ctx.workdir / "data.txt"
    out.write_text(f"({_read(inputs['a'])}+{_read(inputs['b'])})")
    return {"data": ArtifactOut(DATA, out, {})}


def run_fail(ctx, inputs, params):
    ctx.log("about to fail", level="warning")
    raise NodeFailure(params.message)


def run_flaky(ctx, inputs, params):
    marker = Path(params.marker)
    if not marker.exists():
        marker.write_text("failed once")
        raise NodeFailure("flaky: failing the first time")
    out = ctx.workdir / "data.txt"
    out.write_text(_read(inputs.get("data")) + "|flaky")
    return {"data": ArtifactOut(DATA, out, {})}


def run_crash(ctx, inputs, params):
    raise ZeroDivisionError("division by zero in a test node")


def run_folder(ctx, inputs, params):
    folder = ctx.workdir / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    return {"data": ArtifactOut(DATA, folder, {"files": 2})}


def _spec(
    kind: str, label: str, params, run: str, *, inputs=(), outputs=(Port("data", DATA),), queue="cpu"
) -> NodeSpec:
    return register(
        NodeSpec(
            kind=kind,
            label=label,
            category="Testing",
            description=label,
            help=label,
            icon="T",
            queue=queue,
            params=params,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            implementation=f"tests.gpu_worker.testkinds:{run}",
        )
    )


SOURCE = _spec("test.source", "Test source", SourceParams, "run_source")
STEP = _spec("test.step", "Test step", StepParams, "run_step", inputs=[Port("data", DATA, required=False)])
JOIN = _spec("test.join", "Test join", NoParams, "run_join", inputs=[Port("a", DATA), Port("b", DATA)])
FAIL = _spec("test.fail", "Test failure", FailParams, "run_fail", inputs=[Port("data", DATA, required=False)])
CRASH = _spec("test.crash", "Test crash", NoParams, "run_crash", inputs=[Port("data", DATA, required=False)])
# The step on the gpu queue: tests that kill workers run it on workers of their own.
GPU_STEP = _spec(
    "test.gpustep",
    "Test GPU step",
    StepParams,
    "run_step",
    inputs=[Port("data", DATA, required=False)],
    queue="gpu",
)
FLAKY = _spec(
    "test.flaky", "Test flaky", FlakyParams, "run_flaky", inputs=[Port("data", DATA, required=False)]
)
FOLDER = _spec(
    "test.folder", "Test folder", NoParams, "run_folder", inputs=[Port("data", DATA, required=False)]
)


def register_all() -> None:
    """(Re-)register every test kind: another test module may have unregistered them."""
    for spec in (SOURCE, STEP, JOIN, FAIL, CRASH, FOLDER, FLAKY, GPU_STEP):
        register(spec)


def unregister_all() -> None:
    from pipelines.registry import unregister

    for kind in KINDS:
        unregister(kind)


def graph(nodes: list[tuple[str, str, dict]], edges: list[tuple[str, str]]) -> dict:
    """A graph from (id, kind, params) and (from_id, to_id[:port]) pairs; ports default to data."""
    out_edges = []
    for source, target in edges:
        target_id, _, port = target.partition(":")
        out_edges.append({"from": [source, "data"], "to": [target_id, port or "data"]})
    return {
        "version": 1,
        "nodes": [
            {"id": i, "kind": k, "params": p, "position": [n * 200, 0]} for n, (i, k, p) in enumerate(nodes)
        ],
        "edges": out_edges,
    }
