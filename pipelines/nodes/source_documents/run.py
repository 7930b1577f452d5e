"""source.documents: the collection's documents, frozen into an artifact folder.

    documents/manifest.json        collection id and one entry per document (id, name, sha256, kind ...)
    documents/parsed/<id>.json     the text extracted at upload (pipelines.docs.Parsed as JSON)
    documents/files/<id><ext>      the original file, only for a document without extracted text

The extracted text, not the originals, is what downstream nodes need, and it is much smaller
than a folder of PDFs. The folder's content (hence the artifact's content key) changes exactly
when a document is added, removed or replaced, so downstream caching follows the data.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, NodeFailure
from pipelines.types import ArtifactType

MANIFEST_FORMAT = "llmops.documents/1"


def run(ctx, inputs: dict, params) -> dict[str, ArtifactOut]:
    documents = ctx.resource("collection", params.collection)
    if not documents:
        raise NodeFailure(
            f"Collection {params.collection} has no readable documents yet: upload some on the "
            "Knowledge page (documents that failed to parse are left out)."
        )
    out = Path(ctx.workdir) / "documents"
    (out / "parsed").mkdir(parents=True, exist_ok=True)
    entries = []
    for done, document in enumerate(documents, start=1):
        ctx.check_cancelled()
        entries.append(_collect(document, out))
        ctx.progress(done, len(documents), f"Collected {done}/{len(documents)} documents")
    manifest = {"format": MANIFEST_FORMAT, "collection": params.collection, "documents": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    kinds = Counter(e["kind"] for e in entries)
    return {
        "documents": ArtifactOut(
            ArtifactType.DOCUMENTS,
            path=out,
            metadata={"collection": params.collection, "documents": len(entries), "kinds": dict(kinds)},
        )
    }


def _collect(document: dict[str, Any], out: Path) -> dict[str, Any]:
    doc_id = int(document["id"])
    entry = {key: document.get(key) for key in ("id", "name", "sha256", "kind", "content_type", "size")}
    entry.update(parsed=None, file=None)
    parsed = document.get("parsed_path") or document.get("text_path")
    if parsed and Path(parsed).is_file():
        entry["parsed"] = f"parsed/{doc_id}.json"
        _place(Path(parsed), out / entry["parsed"])
    elif document.get("path") and Path(document["path"]).is_file():
        (out / "files").mkdir(exist_ok=True)
        entry["file"] = f"files/{doc_id}{Path(document['path']).suffix}"
        _place(Path(document["path"]), out / entry["file"])
    else:
        raise NodeFailure(f"The stored file of document {document.get('name')!r} is missing on this worker.")
    return entry


def _place(source: Path, target: Path) -> None:
    """Hard-link when source and work folder share a disk (instant, no space), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
