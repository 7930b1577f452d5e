"""serve.rag: a question-answering service: retrieval from an index plus generation."""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipelines.issues import CheckContext, GraphIssue
from pipelines.params import Params, describe_choices, param
from pipelines.resources import (
    DeviceProfile,
    ResourceEstimateInputs,
    first_model,
    human_bytes,
    inference_bytes,
)
from pipelines.spec import NodeSpec, Port, ResourceEstimate
from pipelines.types import ArtifactType

DEFAULT_PROMPT = (
    "Answer the question using only the context below. If the context does not contain the "
    "answer, say that you don't know.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
)
PLACEHOLDERS = ("context", "question")
MODES = {
    "generate": "Find the best passages and let the model write an answer from them.",
    "extractive": "Answer with the best passages themselves, without the model: fast and exact.",
}
ROUTINGS = {
    "auto": "Each question goes to the adapter whose description is closest to it.",
    "named": "Each request names the adapter to use; without a name the base model answers.",
}
# Concurrent requests a serve worker batches together (bounds the KV cache in the estimate).
SERVE_BATCH = 4

NodeId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
AdapterDescription = Annotated[str, Field(min_length=1, max_length=500)]


class ServeRagParams(Params):
    mode: Literal["generate", "extractive"] = param(
        "generate",
        title="Answer mode",
        description="How answers are made. " + describe_choices(MODES),
        choices=MODES,
    )
    prompt_template: str = param(
        DEFAULT_PROMPT,
        title="Prompt template",
        description=(
            "The instructions given to the model. {context} is replaced by the passages found, "
            "{question} by the user's question; both must appear."
        ),
        widget="textarea",
        min_length=1,
        max_length=8000,
    )
    top_k: int = param(
        4,
        title="Passages per answer",
        description=(
            "How many of the closest passages are given to the model (or returned "
            "in extractive mode)."
        ),
        ge=1,
        le=50,
    )
    score_threshold: float = param(
        0.0,
        title="Minimum similarity",
        description=(
            "Passages less similar to the question than this (0 to 1) are left "
            "out. 0 keeps them all."
        ),
        ge=0.0,
        le=1.0,
        advanced=True,
    )
    max_tokens: int = param(
        256,
        title="Answer length (tokens)",
        description="The longest answer the model writes by default; each request may ask for less.",
        ge=1,
        le=8192,
    )
    temperature: float = param(
        0.7,
        title="Temperature",
        description=(
            "Creativity of the answers: 0 always gives the most likely words, 1 "
            "and above varies more."
        ),
        ge=0.0,
        le=2.0,
    )
    adapter_routing: Literal["auto", "named"] = param(
        "auto",
        title="Adapter choice",
        description="When several adapters are connected: how one is chosen. " + describe_choices(ROUTINGS),
        choices=ROUTINGS,
        advanced=True,
    )
    adapter_descriptions: dict[NodeId, AdapterDescription] = param(
        {},
        title="Adapter descriptions",
        description=(
            "For each connected adapter (by the id of the fine-tune step that made it), what it is "
            "good at, e.g. “questions about invoices”. Used to route questions automatically."
        ),
        widget="keyvalue",
        max_length=64,
        advanced=True,
    )

    @field_validator("prompt_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        # Only {context} and {question} may appear: the template is filled with str.format,
        # and any other field ({0}, {context.__class__}, {x!r}) would fail or leak attributes.
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"unbalanced braces ({exc}); write {{{{ and }}}} for literal braces") from exc
        fields = [(name, spec, conv) for _, name, spec, conv in parsed if name is not None]
        for name, spec, conv in fields:
            if name not in PLACEHOLDERS or spec or conv:
                raise ValueError(f"only {{context}} and {{question}} may appear in braces, not {{{name}}}")
        missing = [p for p in PLACEHOLDERS if p not in {name for name, _, _ in fields}]
        if missing:
            raise ValueError("the template must contain " + " and ".join(f"{{{p}}}" for p in missing))
        return value


def estimate(
    params: ServeRagParams, input_meta: ResourceEstimateInputs, device: DeviceProfile | None = None
) -> ResourceEstimate | None:
    model = first_model(input_meta)
    if model is None or params.mode == "extractive":
        return None
    # The prompt holds top_k passages of a few hundred tokens each, plus the answer.
    seq = 300 * params.top_k + params.max_tokens
    total = inference_bytes(model, batch=SERVE_BATCH, seq=seq, device=device)
    return ResourceEstimate(
        total,
        f"model weights {human_bytes(model.weight_bytes)} plus {SERVE_BATCH} concurrent answers",
        advice="add a Quantize step before it (int8 or NF4) or choose a smaller model",
    )


def check(params: ServeRagParams, input_meta: ResourceEstimateInputs, ctx: CheckContext) -> list[GraphIssue]:
    adapters = {meta.node for meta in input_meta.get("adapters", [])}
    unknown = sorted(set(params.adapter_descriptions) - adapters)
    issues = []
    if unknown:
        issues.append(GraphIssue(
            "unknown_adapter",
            "Described adapters that are not connected: " + ", ".join(unknown)
            + ". Use the ids of the fine-tune steps connected to Adapters.",
            field="adapter_descriptions", severity="warning",
        ))
    undescribed = sorted(adapters - set(params.adapter_descriptions))
    if params.adapter_routing == "auto" and len(adapters) > 1 and undescribed:
        issues.append(GraphIssue(
            "adapter_without_description",
            "With several adapters, questions are routed by description: describe "
            + ", ".join(undescribed) + ".",
            field="adapter_descriptions", severity="warning",
        ))
    return issues


SPEC = NodeSpec(
    kind="serve.rag",
    label="Q&A service (RAG)",
    category="Serving",
    description="Answers questions from your documents: finds passages, then writes an answer.",
    help=(
        "Builds a question-answering service. For each question it looks up the closest "
        "passages in the search index and gives them to the model with the prompt template, so "
        "answers are grounded in your documents and cite their sources. “Extractive” mode "
        "returns the passages themselves, with no model. Connect fine-tuned adapters to "
        "specialise answers; with several, each question is routed to the best one."
    ),
    icon="💬",
    queue="serve",
    params=ServeRagParams,
    inputs=(
        Port("model", ArtifactType.MODEL, "Model"),
        Port("index", ArtifactType.VECTOR_INDEX, "Search index"),
        Port("adapters", ArtifactType.ADAPTER, "Adapters", required=False, multiple=True),
    ),
    outputs=(Port("service", ArtifactType.SERVICE, "Service"),),
    implementation="pipelines.nodes.serve_rag.run:run",
    estimate=estimate,
    check=check,
)
