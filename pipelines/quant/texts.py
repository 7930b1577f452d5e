"""Text for calibration, quantization-aware training and held-out perplexity (pure Python).

With a dataset connected, calibration (and QAT) read its training rows and perplexity its
held-out rows, which the model never sees while being quantized. Without one, two short
built-in passages stand in, written for this purpose (not part of the demo model's corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_CALIBRATION = [
    "A pipeline turns raw documents into answers: it reads files, splits them into chunks, stores vectors.",
    "Each node on the canvas has inputs on the left and outputs on the right, and edges carry artifacts.",
    "The worker loads the model once and keeps it warm, so the next request is answered quickly.",
    "Quantization stores every weight with fewer bits, which makes the model smaller and often faster.",
    "An int8 weight is an integer between minus one hundred twenty seven and one hundred twenty seven.",
    "The scale maps the largest weight to the largest integer, and every other weight is rounded.",
    "A ternary weight is minus one, zero or plus one, multiplied by one scale for the whole matrix.",
    "Fine-tuning adapts a base model to your own examples, and LoRA trains only small extra matrices.",
    "The evaluation step measures perplexity on examples the model did not see during training.",
    "A lower perplexity means the model is less surprised by the text and predicts it better.",
    "When the run finishes, the report shows the size, the speed and the quality side by side.",
    "You can publish the service as an endpoint and call it with an API key from any program.",
    "The builder checks the graph before a run and explains which connection is missing.",
    "Documents can be text, markdown, PDF or Word files, and each one is split into passages.",
    "The retriever finds the passages closest to the question and passes them to the model.",
    "A checkpoint lets training resume where it stopped if the worker restarts in the middle.",
]

BUILTIN_HELD_OUT = [
    "The quantized model answers the same questions with a fraction of the memory it needed before.",
    "Each weight matrix gets its own scale, so a layer with large values does not hurt the others.",
    "The platform measures how many tokens per second the model generates before and after the change.",
    "A smaller model fits on a cheaper machine, and the service starts faster after a restart.",
    "The report lists every layer with its error, so you can keep the most sensitive ones in more bits.",
    "Training a little after quantization lets the model adapt to its new, coarser weights.",
    "When the budget is too small, the node fails and tells you the smallest size it can reach.",
    "The endpoint speaks the same protocol as the chat completions API, so existing clients work.",
]


@dataclass
class TextSplit:
    train: list[str]  # calibration takes the first rows, QAT trains on all of them
    held_out: list[str]
    source: str  # where the text came from, said in the report

    def calibration(self, samples: int) -> list[str]:
        return self.train[:samples]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "train_rows": len(self.train), "held_out_rows": len(self.held_out)}


def row_text(row: dict[str, Any]) -> str:
    """One training text from a dataset row of any of the four formats."""
    if "messages" in row:
        return "\n".join(str(m.get("content", "")) for m in row["messages"] if isinstance(m, dict)).strip()
    if "instruction" in row:
        parts = [row.get("instruction", ""), row.get("input", ""), row.get("output", "")]
        return "\n".join(str(p) for p in parts if p).strip()
    return str(row.get("text", "")).strip()


def builtin_split() -> TextSplit:
    return TextSplit(list(BUILTIN_CALIBRATION), list(BUILTIN_HELD_OUT), "built-in sample text")


def dataset_split(folder: Path) -> TextSplit:
    """Calibration/QAT rows from the training split, held-out rows from the validation split
    (or, when the dataset has none, the last tenth of the training rows, set aside).

    Raises ValueError when the dataset holds no text at all."""
    from pipelines.ml.datasets import load_split

    train = [t for t in (row_text(r) for r in load_split(folder, "train")) if t]
    held = [t for t in (row_text(r) for r in load_split(folder, "validation")) if t]
    if not train and not held:
        raise ValueError("the calibration dataset has no text rows")
    if not held:
        cut = max(1, len(train) // 10) if len(train) > 1 else 0
        train, held = (train[:-cut], train[-cut:]) if cut else (train, [])
    if not train:  # a single row: nothing can be set aside, so it serves both purposes
        train = held[:]
    return TextSplit(train, held or train[:], "connected dataset")
