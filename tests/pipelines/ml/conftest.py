"""Tiny real models and a recording NodeContext for the ML tests.

The models are built with the same builder as the bundled demo model (``build_demo_model``),
only smaller, into a session temp folder: a few seconds, no downloads.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipelines.context import ArtifactRef, NodeCancelled, NodeFailure
from pipelines.types import ArtifactType

# Pre-trained long enough that its output head is trained: LoRA leaves the head frozen, so a
# head still at its random init (logits within +-1) could not express a confident answer.
TINY = dict(
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    intermediate_size=128,
    vocab_size=512,
    max_position_embeddings=256,
    steps=150,
    seq_len=32,
    batch_size=16,
    learning_rate=5e-3,
)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine more threads only
    contend with the other test processes (and spin)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class RecordingContext:
    """A real NodeContext that keeps every event it is given.

    ``cancel_on_check=N`` makes the N-th ``check_cancelled()`` call raise NodeCancelled, as a
    cancelled run (or a worker about to die) would. ``resources`` answers ``resource()``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        device: str = "cpu",
        resources: dict | None = None,
        cancel_on_check: int | None = None,
        workspace_id: int = 1,
        checkpoint_dir: Path | None = None,
    ):
        self.node_id, self.run_id, self.workspace_id = "node", 1, workspace_id
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device = device
        if checkpoint_dir is not None:  # optional: an engine that keeps checkpoints across attempts
            self.checkpoint_dir = Path(checkpoint_dir)
        self.resources = resources or {}
        self.cancel_on_check = cancel_on_check
        self.checks = 0
        self.events: list[dict[str, Any]] = []
        self.logs: list[tuple[str, str]] = []
        self.metrics: dict[str, list[tuple[int | None, float]]] = defaultdict(list)

    def progress(self, done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
        self.events.append({"done": done, "total": total, "message": message, **metrics})

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.metrics[name].append((step, value))

    def cancelled(self) -> bool:
        return self.cancel_on_check is not None and self.checks >= self.cancel_on_check

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancelled():
            raise NodeCancelled()

    def resource(self, kind: str, ref: Any) -> Any:
        try:
            return self.resources[(kind, ref)]
        except KeyError:
            raise NodeFailure(f"no {kind} {ref!r} in this workspace") from None

    def log_text(self) -> str:
        return "\n".join(message for _, message in self.logs)


@pytest.fixture
def make_ctx(tmp_path):
    counter = {"n": 0}

    def factory(workdir: Path | None = None, **kwargs: Any) -> RecordingContext:
        counter["n"] += 1
        return RecordingContext(workdir or tmp_path / f"node{counter['n']}", **kwargs)

    return factory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama with a 512-token BPE tokenizer, briefly pre-trained."""
    from pipelines.ml.demo import DemoConfig, build_demo_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    build_demo_model(out, DemoConfig(**TINY))
    return out


def model_ref(folder: Path) -> ArtifactRef:
    """A MODEL artifact as source.model outputs it for a local folder."""
    return ArtifactRef(
        ArtifactType.MODEL,
        folder,
        {
            "source": "local",
            "model_path": str(folder),
            "dtype": "auto",
            "precision": "float32",
            "quantization": None,
            "trust_remote_code": False,
        },
    )


def keyword_rows(n_per_label: int = 24, seed: int = 0) -> list[dict[str, str]]:
    """A task a random model cannot solve and LoRA learns fast: the label is named by a keyword
    hidden among filler words."""
    rng = random.Random(seed)
    filler = [
        "the",
        "model",
        "reads",
        "a",
        "short",
        "note",
        "about",
        "data",
        "and",
        "training",
        "on",
        "a",
        "small",
        "device",
    ]
    keywords = {"alpha": ["red", "apple", "fire"], "beta": ["blue", "ocean", "ice"]}
    rows = []
    for label, words in keywords.items():
        for _ in range(n_per_label):
            text = rng.sample(filler, 5)
            text.insert(rng.randrange(len(text) + 1), rng.choice(words))
            rows.append({"text": " ".join(text), "label": label})
    rng.shuffle(rows)
    return rows


def dataset_ref(
    folder: Path,
    rows: list[dict],
    fmt: str,
    *,
    validation: float = 0.25,
    seed: int = 0,
    stratify: str | None = None,
) -> ArtifactRef:
    """A DATASET artifact folder written the way source.dataset writes it."""
    from pipelines.ml import datasets as ds

    parsed = ds.ParsedDataset(fmt, rows)
    if fmt == "classification":
        parsed.labels = sorted({r["label"] for r in rows})
    train, held = ds.split_rows(rows, validation=validation, seed=seed, stratify=stratify)
    meta = ds.write_dataset(folder, parsed=parsed, train=train, validation=held)
    return ArtifactRef(ArtifactType.DATASET, folder, meta)


@pytest.fixture
def keyword_dataset(tmp_path) -> ArtifactRef:
    return dataset_ref(tmp_path / "keywords", keyword_rows(), "classification", stratify="label")


def train_params(**overrides):
    from pipelines.nodes.train_lora.spec import TrainLoraParams

    base = dict(
        learning_rate=5e-3,
        max_steps=60,
        batch_size=8,
        logging_steps=5,
        save_steps=1000,
        max_seq_length=64,
        max_grad_norm=1.0,
        warmup_ratio=0.0,
    )
    return TrainLoraParams(**{**base, **overrides})


@pytest.fixture(scope="session")
def keyword_training(tmp_path_factory, tiny_model_dir):
    """Uploaded CSV -> source.dataset node -> train.lora node on the keyword task; one run
    shared by the tests that read its results."""
    import csv

    from pipelines.nodes.source_dataset.run import run as source_dataset
    from pipelines.nodes.source_dataset.spec import SourceDatasetParams
    from pipelines.nodes.train_lora.run import run as train_lora

    root = tmp_path_factory.mktemp("keyword-training")
    upload = root / "keywords.csv"
    with open(upload, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([(r["text"], r["label"]) for r in keyword_rows()])
    resource = {
        "path": str(upload),
        "filename": "keywords.csv",
        "format": "classification",
        "name": "keywords",
    }
    data_ctx = RecordingContext(root / "dataset", resources={("dataset", 7): resource})
    dataset_out = source_dataset(data_ctx, {}, SourceDatasetParams(dataset=7, validation_split=0.25))[
        "dataset"
    ]
    dataset = ArtifactRef(ArtifactType.DATASET, dataset_out.path, dataset_out.metadata)
    ctx = RecordingContext(root / "work")
    outputs = train_lora(
        ctx, {"model": model_ref(tiny_model_dir), "dataset": dataset}, train_params(max_steps=80)
    )
    return {"ctx": ctx, "outputs": outputs, "dataset": dataset, "dataset_ctx": data_ctx}


@pytest.fixture(scope="session")
def ml():
    """The helpers above, for test modules (importlib mode cannot import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        dataset_ref=dataset_ref,
        keyword_rows=keyword_rows,
        model_ref=model_ref,
        train_params=train_params,
        RecordingContext=RecordingContext,
    )
