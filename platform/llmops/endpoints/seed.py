"""Demo content for ``manage.py seed_demo`` (found through its ``<app>/seed.py`` extension point):
a ready pipeline "Q&A over the platform's own documentation".

The README and the Markdown files under docs/ become a document collection; the pipeline
indexes them and serves two endpoints from one index and the bundled demo model: one that
answers with the passages themselves (extractive: exact, works fully offline) and one where
the demo model writes the answer (generate). A newcomer presses Run, then Publish.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

PIPELINE_NAME = "Q&A over the platform's own documentation"
COLLECTION_NAME = "Platform documentation"
MAX_DOC_BYTES = 2 * 1024 * 1024


def documentation_files(root: Path | None = None) -> list[Path]:
    root = Path(root or settings.BASE_DIR)
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file() and f.stat().st_size <= MAX_DOC_BYTES]


def docs_graph(collection_id: int) -> dict:
    def node(node_id, kind, x, y, label, **params):
        return {"id": node_id, "kind": kind, "label": label, "params": params, "position": [x, y]}

    def edge(source, source_port, target, target_port):
        return {"from": [source, source_port], "to": [target, target_port]}

    return {
        "version": 1,
        "nodes": [
            node("docs", "source.documents", 60, 60, "Platform documentation", collection=collection_id),
            node("index", "vectorize.faiss", 340, 60, "Search index", chunk_size=200, chunk_overlap=32),
            node("model", "source.model", 340, 260, "Demo model", model="demo"),
            node("extractive", "serve.rag", 620, 0, "Exact passages", mode="extractive", top_k=3),
            node(
                "generate",
                "serve.rag",
                620,
                220,
                "Written answers",
                mode="generate",
                top_k=3,
                max_tokens=96,
                temperature=0.3,
            ),
            node(
                "api",
                "publish.api",
                900,
                0,
                "Docs Q&A API",
                slug="docs-qa",
                description="Answers questions about the platform with passages from its documentation.",
            ),
            node(
                "api_gen",
                "publish.api",
                900,
                220,
                "Docs Q&A (demo model) API",
                slug="docs-qa-generate",
                description="The demo model writes the answer from the documentation's passages.",
            ),
        ],
        "edges": [
            edge("docs", "documents", "index", "documents"),
            edge("index", "index", "extractive", "index"),
            edge("model", "model", "extractive", "model"),
            edge("index", "index", "generate", "index"),
            edge("model", "model", "generate", "model"),
            edge("extractive", "service", "api", "service"),
            edge("generate", "service", "api_gen", "service"),
        ],
    }


def _collection(*, user, workspace):
    from llmops.knowledge.models import Collection
    from llmops.knowledge.services import collection_create, document_create

    collection = Collection.objects.filter(workspace=workspace, name=COLLECTION_NAME).first()
    if collection is None:
        collection = collection_create(
            user=user,
            workspace=workspace,
            name=COLLECTION_NAME,
            description="The platform's README and docs, for the demo Q&A pipeline.",
        )
    root = Path(settings.BASE_DIR)
    for path in documentation_files(root):
        # Same bytes are a no-op (documents are keyed by content), so re-seeding adds only changes.
        document_create(
            user=user, collection=collection, name=str(path.relative_to(root)), data=path.read_bytes()
        )
    return collection


def seed_demo(*, user, workspace) -> str | None:
    from llmops.builder.models import Pipeline
    from llmops.builder.services import pipeline_create

    collection = _collection(user=user, workspace=workspace)
    if Pipeline.objects.filter(workspace=workspace, name=PIPELINE_NAME, deleted_at__isnull=True).exists():
        return None
    pipeline_create(
        workspace=workspace,
        user=user,
        name=PIPELINE_NAME,
        graph=docs_graph(collection.pk),
        description="Ask questions about this platform: its README and docs, indexed and served as an API "
        "(exact passages, and answers written by the demo model). Press Run, then Publish.",
        message="Seeded by make run",
    )
    return f"Demo pipeline ready: “{PIPELINE_NAME}” (Pipelines → open it → Run → Publish)."
