"""source.dataset: training or evaluation data uploaded by the user."""

from __future__ import annotations

from typing import Literal

from pipelines.params import Params, describe_choices, param
from pipelines.spec import NodeSpec, Port
from pipelines.types import ArtifactType

FORMATS = {
    "auto": "Detect the format from the file.",
    "instruction": "JSON lines with instruction, input and output.",
    "chat": "JSON lines with a list of messages (role and content).",
    "text": "Plain text, for continued pre-training.",
    "classification": "CSV with a text column and a label column.",
}


class SourceDatasetParams(Params):
    dataset: int = param(
        title="Dataset",
        description="The dataset to use (upload it on the Datasets page first).",
        widget="dataset",
        missing="Choose a dataset.",
        ge=1,
    )
    format: Literal["auto", "instruction", "chat", "text", "classification"] = param(
        "auto",
        title="Format",
        description="How the rows are laid out. " + describe_choices(FORMATS),
        choices=FORMATS,
    )
    validation_split: float = param(
        0.1,
        title="Held-out share",
        description="Share of rows kept aside to measure quality (0.1 = 10%). 0 uses every row for training.",
        ge=0.0,
        le=0.5,
    )
    max_rows: int = param(
        0,
        title="Maximum rows",
        description="Use at most this many rows, e.g. for a quick trial run. 0 uses them all.",
        ge=0,
        le=10_000_000,
        advanced=True,
    )
    seed: int = param(
        42,
        title="Shuffle seed",
        description="Rows are shuffled before the split; the same seed gives the same split every time.",
        ge=0,
        le=2**31 - 1,
        advanced=True,
    )


SPEC = NodeSpec(
    kind="source.dataset",
    label="Dataset",
    category="Sources",
    description="Examples to train or test a model on (JSONL, chat, text or labelled CSV).",
    help=(
        "Starts a pipeline from a dataset you uploaded on the Datasets page: instruction "
        "examples, chat conversations, plain text, or labelled rows for classification. A "
        "share of the rows is held out so the Evaluate step can measure the model on examples "
        "it never saw."
    ),
    icon="🗂️",
    queue="cpu",
    params=SourceDatasetParams,
    outputs=(Port("dataset", ArtifactType.DATASET, "Dataset"),),
    implementation="pipelines.nodes.source_dataset.run:run",
)
