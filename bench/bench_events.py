"""Event latency: from ``ctx.progress()`` in a node on a Celery worker to a websocket client
connected to the ASGI server (daphne) at /ws/runs/<id>/?format=json. Prints p50 and p95; the
goal is p95 under 100 ms on the embedded stack.

    .venv/bin/python bench/bench_events.py [--samples 120]

It starts its own embedded stack (Valkey on a unix socket, SQLite, one worker, daphne on a
free port). The node stamps each progress call with the wall clock (a metric); the client
subtracts it from the arrival time (same machine, same clock). The worker's progress throttle
is lowered to 20 per second so samples come quickly; latency does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from pipelines.context import ArtifactOut
from pipelines.registry import register
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import EmbeddedStack  # noqa: E402

GOAL_P95_MS = 100.0
INTERVAL_S = 0.06  # between progress calls, just above the lowered throttle (0.05 s)


class TickParams(BaseModel):
    samples: int = Field(120, ge=1, le=10_000)


def run_ticks(ctx, inputs, params):
    for i in range(1, params.samples + 1):
        time.sleep(INTERVAL_S)
        ctx.progress(i, params.samples + 1, f"tick {i}", sent=time.time())
    out = ctx.workdir / "ticks.txt"
    out.write_text(str(params.samples))
    return {"data": ArtifactOut(ArtifactType.DATASET, out, {})}


TICKS = register(
    NodeSpec(
        kind="bench.ticks",
        label="Ticks",
        category="Benchmark",
        description="Reports progress.",
        help="Reports progress.",
        icon="t",
        queue="cpu",
        params=TickParams,
        outputs=(Port("data", ArtifactType.DATASET),),
        implementation="bench.bench_events:run_ticks",
    )
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _open_websocket(port: int, path: str, cookie: str):
    """A minimal RFC 6455 client (handshake, unmasked server frames): enough to read events
    without another dependency (autobahn's asyncio client clashes with daphne's twisted)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: sessionid={cookie}\r\n\r\n"
        ).encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in status.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"websocket refused: {status[:200]!r}")
    return reader, writer


async def _read_message(reader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return opcode, await reader.readexactly(length)


async def _collect(port: int, run_id: int, cookie: str, timeout: float) -> list[float]:
    """Latencies (ms) of progress events until the run's final event."""
    reader, writer = await _open_websocket(port, f"/ws/runs/{run_id}/?format=json&after=0", cookie)
    latencies: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            opcode, payload = await asyncio.wait_for(_read_message(reader), deadline - time.monotonic())
            arrived = time.time()
            if opcode == 0x8:
                raise RuntimeError(f"the server closed the websocket: {payload[:2].hex()}")
            if opcode != 0x1:
                continue
            event = json.loads(payload)
            sent = (event.get("metrics") or {}).get("sent")
            if event["type"] == "progress" and sent:
                latencies.append((arrived - sent) * 1000)
            if event["type"] == "run" and event["status"] in ("succeeded", "failed", "cancelled"):
                if event["status"] != "succeeded":
                    raise RuntimeError(f"the run {event['status']}")
                return latencies
    finally:
        writer.close()
    raise RuntimeError("the run did not finish in time")


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("daphne did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=120)
    args = parser.parse_args()
    env = {
        "LLMOPS_PROGRESS_INTERVAL_S": "0.05",
        "LLMOPS_EXTRA_NODE_MODULES": "bench.bench_engine,bench.bench_events",
    }
    with EmbeddedStack(worker_env=env) as stack:
        port = _free_port()
        stack.spawn(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "llmops.config.asgi:application",
            ],
            "daphne",
        )
        _wait_for_port(port)
        graph = {
            "version": 1,
            "nodes": [
                {
                    "id": "ticks",
                    "kind": "bench.ticks",
                    "params": {"samples": args.samples},
                    "position": [0, 0],
                }
            ],
            "edges": [],
        }
        pipeline = stack.pipeline(graph, name="events")
        from llmops.runs.services import run_start

        cookie = _session_cookie(stack.user)
        run = run_start(user=stack.user, pipeline=pipeline, force=True)
        latencies = asyncio.run(_collect(port, run.pk, cookie, timeout=60 + args.samples * INTERVAL_S * 3))
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(
        f"event latency ctx.progress() -> websocket client, {len(latencies)} samples: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(f"goal p95 < {GOAL_P95_MS:.0f} ms: {'OK' if p95 < GOAL_P95_MS else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
