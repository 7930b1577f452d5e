"""source.model: a base model (the bundled demo model, a hub id, or a folder on the worker)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator

from pipelines.issues import CheckContext, GraphIssue
from pipelines.params import Params, describe_choices, param
from pipelines.resources import BITS, ModelFacts, facts_from_size, parse_model_size
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

DEMO_MODEL = "demo"
# The bundled offline demo model: the shape of `pipelines.ml.demo.DemoConfig` (a test keeps
# them in step), stated here so listing specs never imports the model builder.
DEMO_MODEL_FACTS = ModelFacts(
    name=DEMO_MODEL, params=1_574_016, hidden=128, layers=4, vocab=2048, bits=32.0, context=512
)

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
LOCAL_PATH_RE = re.compile(r"^/[A-Za-z0-9._/ -]{1,500}$")

DTYPES = {
    "auto": "Use the precision the model was saved in (float32 on a CPU).",
    "float32": "Full precision: 4 bytes per weight, the most exact and the largest.",
    "bfloat16": "Half the memory of float32, robust for training; needs a recent GPU or CPU.",
    "float16": "Half the memory of float32; older GPUs support it.",
}


class SourceModelParams(Params):
    model: str = param(
        DEMO_MODEL,
        title="Model",
        description=(
            "“demo” for the small model bundled with the platform (works offline), a model id from "
            "the Hugging Face hub such as “meta-llama/Llama-2-7b-hf”, or a folder on the worker "
            "such as “/models/my-llama”."
        ),
        widget="model",
        min_length=1,
        max_length=500,
    )
    revision: str | None = param(
        None,
        title="Revision",
        description="A branch, tag or commit of the hub model to pin. Empty uses the latest version.",
        pattern=r"^[A-Za-z0-9._/-]{1,100}$",
        advanced=True,
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto",
        title="Precision",
        description="The number format the weights are loaded in. " + describe_choices(DTYPES),
        choices=DTYPES,
        advanced=True,
    )
    trust_remote_code: bool = param(
        False,
        title="Run the model's own code",
        description=(
            "Some hub models ship Python code that runs when they load. Leave this off unless "
            "you trust the model's authors; an administrator must also allow it for the workspace."
        ),
        advanced=True,
    )

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: str) -> str:
        value = value.strip()
        if value == DEMO_MODEL or HUB_ID_RE.fullmatch(value):
            return value
        if LOCAL_PATH_RE.fullmatch(value) and ".." not in value.split("/"):
            return value
        raise ValueError("use “demo”, a hub id such as “org/model-name”, or an absolute folder path")


def model_facts(params: SourceModelParams) -> ModelFacts | None:
    """What the memory pre-flight knows about the chosen model without loading it."""
    if params.model == DEMO_MODEL:
        facts = DEMO_MODEL_FACTS
        return facts if params.dtype == "auto" else facts.with_bits(BITS[params.dtype])
    size = parse_model_size(params.model)
    if size is None:
        return None
    bits = 16.0 if params.dtype == "auto" else BITS[params.dtype]
    return facts_from_size(params.model, size, bits=bits)


def facts(params: SourceModelParams, input_meta: dict[str, Any]) -> dict[str, ModelFacts | None]:
    return {"model": model_facts(params)}


def check(params: SourceModelParams, input_meta: dict[str, Any], ctx: CheckContext) -> list[GraphIssue]:
    if params.trust_remote_code and not ctx.allow_remote_code:
        return [GraphIssue(
            "remote_code_not_allowed",
            "Running a model's own code is off for this workspace; an administrator must allow it first.",
            field="trust_remote_code",
        )]
    return []


SPEC = NodeSpec(
    kind="source.model",
    label="Base model",
    category="Sources",
    description="The language model to start from: the demo model, a hub model or your own.",
    help=(
        "Picks the language model the pipeline builds on. “demo” is a small model bundled with "
        "the platform: it runs anywhere, offline, in seconds, and is good for trying things "
        "out. A hub id (such as meta-llama/Llama-2-7b-hf) is downloaded once by the worker; a "
        "bigger model answers better but needs more memory: the builder warns you when it will "
        "not fit."
    ),
    icon="🧠",
    queue="cpu",
    params=SourceModelParams,
    outputs=(Port("model", ArtifactType.MODEL, "Model"),),
    implementation="pipelines.nodes.source_model.run:run",
    facts=facts,
    check=check,
)
