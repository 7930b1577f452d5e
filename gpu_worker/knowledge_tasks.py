"""Knowledge tasks: keep indexes in sync with their collections, and answer searches.

    llmops.knowledge.sync_index  (queue of vectorize.faiss, "gpu")  embed new documents, drop removed ones
    llmops.knowledge.search      (queue "serve")                    top-k vector ids for a query
    llmops.knowledge.warm        (queue "serve")                    load an index + model ahead of use

Thin by design: the database side is llmops.knowledge.indexing, the ML side is
pipelines.vectorstore; these functions only pass plain data between them. Serve workers keep
loaded models and indexes in the bounded LRU caches of pipelines.vectorstore.search.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init

from gpu_worker.celery_app import app

log = logging.getLogger(__name__)

SYNC_ATTEMPTS = 3  # a sync that lost the race to register re-plans on top of the winner
PROGRESS_EVERY_S = 0.5  # database writes of an index's progress, at most


def _device() -> str:
    try:
        from gpu_worker.devices import device_info

        return device_info(check_torch=True).device
    except Exception:  # noqa: BLE001 - when in doubt, the CPU always works
        return "cpu"


class _Progress:
    """progress(done, total, message, **metrics) -> the index row, throttled."""

    def __init__(self, index_id: int):
        self.index_id = index_id
        self.last = 0.0

    def __call__(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        from llmops.knowledge.indexing import index_sync_progress

        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        eta = metrics.get("eta_s")
        rate = metrics.get("chunks_per_s")
        suffix = f" · {rate:g} chunks/s" if rate else ""
        suffix += f" · about {eta:.0f} s left" if eta else ""
        index_sync_progress(
            index_id=self.index_id, fraction=(done / total) if total else None, message=f"{message}{suffix}"
        )


@app.task(name="llmops.knowledge.sync_index", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sync_index(index_id: int, add_new: bool | None = None) -> dict:
    from llmops.knowledge import indexing
    from pipelines.vectorstore import BuildSettings, SourceDocument, get_embedder
    from pipelines.vectorstore import sync_index as build

    for _attempt in range(SYNC_ATTEMPTS):
        plan = indexing.index_sync_plan(index_id=int(index_id), add_new=add_new)
        if plan is None:
            return {"index": index_id, "skipped": "the index was deleted"}
        try:
            device = _device()
            # Cached per worker process: a burst of uploads is several syncs but one model load.
            embedder = get_embedder(plan["settings"]["model"], device)
            report = build(
                documents=[SourceDocument.from_dict(d) for d in plan["documents"]],
                settings=BuildSettings(**plan["settings"]),
                out_dir=Path(plan["out_dir"]),
                previous_dir=Path(plan["previous_dir"]) if plan["previous_dir"] else None,
                device=device,
                embedder=embedder,
                progress=_Progress(plan["index_id"]),
                add_new=plan["add_new"],
                extra_meta={"collection": plan["collection_id"], "index": plan["index_id"]},
                skip_if_unchanged=True,
            )
        except Exception as exc:  # noqa: BLE001 - the index shows the reason; the task ends cleanly
            log.exception("index %s sync failed", index_id)
            shutil.rmtree(plan["out_dir"], ignore_errors=True)
            indexing.index_sync_failed(index_id=plan["index_id"], error=f"{type(exc).__name__}: {exc}")
            return {"index": index_id, "error": str(exc)[:500]}
        if report.unchanged:
            indexing.index_sync_unchanged(index_id=plan["index_id"])
            return {"index": index_id, "unchanged": True}
        data = report.to_dict()
        data["base_version"] = plan["base_version"] if report.reused_previous else None
        if indexing.index_version_register(
            index_id=plan["index_id"], folder=plan["out_dir"], report=data, base_version=plan["base_version"]
        ):
            return {"index": index_id, "version": plan["base_version"] + 1, "count": report.count}
        shutil.rmtree(plan["out_dir"], ignore_errors=True)
    return {"index": index_id, "error": "gave up after losing the race to register a version"}


def _index_folder(index_id: int, workspace_id: int | None) -> tuple[Any, str | None]:
    from llmops.knowledge.models import VectorIndex

    qs = VectorIndex.objects.filter(pk=index_id)
    if workspace_id is not None:
        qs = qs.filter(workspace_id=workspace_id)
    index = qs.first()
    if index is None:
        return None, "This index does not exist (any more)."
    if not index.path:
        return index, "This index has not been built yet."
    return index, None


@app.task(name="llmops.knowledge.search", acks_late=False)
def search(index_id: int, workspace_id: int, query: str, k: int = 5) -> dict:
    """Vector ids and scores of the top-k chunks; the web joins them with the chunk table.
    User-facing problems come back as {"error", "status"} rather than exceptions."""
    from llmops.knowledge.storage import absolute
    from pipelines.vectorstore import EmbeddingModelError, IndexMismatch, search_folder

    index, problem = _index_folder(int(index_id), int(workspace_id))
    if problem:
        return {"error": problem, "status": 404 if index is None else 409}
    try:
        answer = search_folder(absolute(index.path), str(query), int(k), device=_serve_device())
    except IndexMismatch as exc:
        return {"error": str(exc), "status": 409}
    except EmbeddingModelError as exc:
        return {"error": str(exc), "status": 503}
    except FileNotFoundError as exc:
        return {"error": f"The index files are missing on this worker ({exc}).", "status": 503}
    answer["hits"] = [{"id": h["id"], "score": h["score"]} for h in answer["hits"]]
    return answer


def _serve_device() -> str:
    # One query is a few milliseconds on a CPU; keeping serve workers off the GPU leaves it to
    # the nodes, unless the deployment asks otherwise.
    return os.environ.get("LLMOPS_SERVE_DEVICE", "cpu")


@app.task(name="llmops.knowledge.warm", acks_late=False, ignore_result=True)
def warm(index_id: int) -> dict:
    from llmops.knowledge.storage import absolute
    from pipelines.vectorstore import get_embedder
    from pipelines.vectorstore.search import STORES

    index, problem = _index_folder(int(index_id), None)
    if problem:
        return {"index": index_id, "skipped": problem}
    store = STORES.get(absolute(index.path))
    get_embedder(store.settings.model, _serve_device())
    return {"index": index_id, "loaded": True}


def _consumes_serve() -> bool:
    """Whether this worker was started for the serve queue (prefork children share its argv)."""
    import sys

    argv = sys.argv
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg in ("-Q", "--queues") and i + 1 < len(argv) else None
        if arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        if value and "serve" in value.split(","):
            return True
    return False


def _warm_models() -> None:
    """Load the embedding models of ready indexes, so a fresh serve worker answers the first
    search in milliseconds instead of after a model load (seconds, longer than the web waits)."""
    try:
        from django.db import close_old_connections

        from llmops.knowledge.models import IndexStatus, VectorIndex
        from pipelines.vectorstore import DEFAULT_MODEL, get_embedder

        models = list(
            VectorIndex.objects.filter(status=IndexStatus.READY)
            .order_by("-updated_at")
            .values_list("model_name", flat=True)
            .distinct()[:2]
        ) or [DEFAULT_MODEL]
        close_old_connections()
        for model in models:
            get_embedder(model, _serve_device())
    except Exception:  # noqa: BLE001 - warming is an optimisation; searches load on demand
        log.info("embedding model warm-up skipped", exc_info=True)


@worker_process_init.connect
def _warm_on_start(**kwargs: Any) -> None:
    if _consumes_serve() and os.environ.get("LLMOPS_WARM_EMBEDDER", "1") != "0":
        threading.Thread(target=_warm_models, name="warm-embedder", daemon=True).start()
