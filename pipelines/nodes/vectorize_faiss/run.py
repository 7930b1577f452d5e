"""vectorize.faiss: documents -> passages -> vectors -> FAISS index folder.

The work is pipelines.vectorstore.sync_index (shared with the "follow collection" task). When
the platform knows an index of the same collection built with the same model and chunking
(``ctx.resource("vector_index", ...)``), only new or changed documents are embedded and removed
ones are deleted from it by id; otherwise everything is built from scratch.

Output folder: index.faiss (faiss.write_index), chunks.jsonl, meta.json (model, dimension,
metric, index type, chunking, documents and this run's report).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.types import ArtifactType


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    from pipelines.vectorstore import BuildSettings, EmbeddingModelError, sync_index

    folder = Path(inputs["documents"].path)
    collection, documents = read_documents(folder)
    if not documents:
        raise NodeFailure("The documents input is empty: there is nothing to index.")
    previous = _previous_index(ctx, collection, params)
    out = Path(ctx.workdir) / "index"
    settings = BuildSettings(
        model=params.embedding_model,
        chunk_size=params.chunk_size,
        chunk_overlap=params.chunk_overlap,
        index_type=params.index_type,
        metric=params.metric,
        batch_size=params.batch_size,
    )
    requested = {
        k: getattr(params, k)
        for k in (
            "embedding_model",
            "chunk_size",
            "chunk_overlap",
            "index_type",
            "metric",
            "follow_collection",
        )
    }
    extra = {"collection": collection, "follow_collection": params.follow_collection, "requested": requested}
    if previous:
        extra["base"] = {"index": previous["id"], "version": previous["version"]}
    try:
        report = sync_index(
            documents=documents,
            settings=settings,
            out_dir=out,
            previous_dir=Path(previous["path"]) if previous else None,
            device=ctx.device,
            progress=ctx.progress,
            check_cancelled=ctx.check_cancelled,
            extra_meta=extra,
        )
    except EmbeddingModelError as exc:
        raise NodeFailure(str(exc)) from exc
    names = {d.id: d.name for d in documents}
    for doc_id, reason in report.failed.items():
        ctx.log(f"Skipped {names.get(doc_id, doc_id)}: {reason}", level="warning")
    for note in report.notes:
        ctx.log(note)
    if report.count == 0:
        raise NodeFailure(
            "No passage could be made from the documents: every one failed "
            f"({'; '.join(list(report.failed.values())[:3])})."
        )
    _record_report(out, report.to_dict())
    return {
        "index": ArtifactOut(
            ArtifactType.VECTOR_INDEX,
            path=out,
            metadata={
                "collection": collection,
                "model": report.model,
                "dimension": report.dimension,
                "metric": params.metric,
                "index_type": report.index_type,
                "chunks": report.count,
                "documents": report.documents,
                "chunk_size": report.chunk_size,
                "chunk_overlap": report.chunk_overlap,
                "follow_collection": params.follow_collection,
                "failed": len(report.failed),
                "incremental": report.reused_previous,
            },
        )
    }


def read_documents(folder: Path) -> tuple[int | None, list]:
    """(collection id, documents) of a Documents artifact: its manifest.json when it has one
    (source.documents), else every file in the folder, sniffed by content."""
    from pipelines.vectorstore import SourceDocument

    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        documents = [
            SourceDocument(
                id=int(e["id"]),
                name=e.get("name") or f"document {e['id']}",
                sha256=e.get("sha256") or "",
                kind=e.get("kind") or "",
                path=str(folder / e["file"]) if e.get("file") else None,
                parsed_path=str(folder / e["parsed"]) if e.get("parsed") else None,
            )
            for e in manifest.get("documents", [])
        ]
        return manifest.get("collection"), documents
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return None, [
        SourceDocument(
            id=n,
            name=str(p.relative_to(folder)),
            path=str(p),
            sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for n, p in enumerate(files, start=1)
    ]


def _previous_index(ctx, collection: int | None, params) -> dict[str, Any] | None:
    """The platform's current index built like this one, to update incrementally; None when
    there is none or the platform cannot say (then the node builds from scratch)."""
    if collection is None:
        return None
    ref = {
        "collection": collection,
        "embedding_model": params.embedding_model,
        "chunk_size": params.chunk_size,
        "chunk_overlap": params.chunk_overlap,
        "metric": params.metric,
        "index_type": params.index_type,
    }
    try:
        found = ctx.resource("vector_index", ref)
    except Exception as exc:  # noqa: BLE001 - no previous index is never an error: build it all
        ctx.log(f"Building from scratch (no previous index available: {exc})")
        return None
    if not found or not found.get("path") or not (Path(found["path"]) / "meta.json").is_file():
        return None
    return found


def _record_report(out: Path, report: dict[str, Any]) -> None:
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["report"] = report
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
