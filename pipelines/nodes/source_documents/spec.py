"""source.documents: a document collection uploaded by the user, as the start of a pipeline."""

from __future__ import annotations

from pipelines.params import Params, param
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType


class SourceDocumentsParams(Params):
    collection: int = param(
        title="Collection",
        description="The document collection to use (upload files on the Knowledge page first).",
        widget="collection",
        missing="Choose a document collection.",
        ge=1,
    )


SPEC = NodeSpec(
    kind="source.documents",
    label="Documents",
    category="Sources",
    description="A collection of your documents (PDF, Word, Markdown, text, HTML).",
    help=(
        "Starts a pipeline from documents you uploaded on the Knowledge page. Pick the "
        "collection; connect it to “Search index” to make the documents searchable, so a "
        "question-answering service can quote them."
    ),
    icon="📄",
    queue="cpu",
    params=SourceDocumentsParams,
    outputs=(Port("documents", ArtifactType.DOCUMENTS, "Documents"),),
    implementation="pipelines.nodes.source_documents.run:run",
)
