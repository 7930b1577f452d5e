"""The evaluate node: quality and efficiency of a model, with and without its adapter.

Quality, on the chosen split of the dataset:
- perplexity: exp(mean negative log-likelihood) of the answer tokens (every token for plain
  text), with the same prompts the training used;
- accuracy (labelled data): each label is scored by its log-likelihood after the
  classification prompt and the most likely one is the prediction. This needs no generation
  and no parsing, and works the same for a base model and an adapted one;
- ROUGE-1/2/L (rouge-score) and BLEU (sacrebleu) of greedy generations against the answers.

Baseline against adapted: one model load; the peft adapter is switched off for the baseline
(``disable_adapter``). Efficiency per variant: time, tokens per second, peak memory, energy
(NVML or a labelled estimate) and cost at the price per device hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.context import ArtifactOut, ArtifactRef, NodeFailure
from pipelines.ml import datasets as ds
from pipelines.ml import report as rep
from pipelines.ml.formatting import (
    Example,
    classification_prompt,
    encode_pair,
    encode_records,
    generation_prompt,
    reference_answer,
)
from pipelines.ml.loading import LoadOptions, bnb_4bit_problem, load_model, load_tokenizer, model_folder
from pipelines.ml.metrics import EnergyMeter, MemoryTracker, cpu_threads, device_name
from pipelines.types import ArtifactType

BATCH = 8
MAX_LENGTH = 512  # tokens per scored sequence (prompt + answer); longer prompts are cut on the left
HIGHER_IS_BETTER = {
    "accuracy": True,
    "rouge1": True,
    "rouge2": True,
    "rougeL": True,
    "bleu": True,
    "perplexity": False,
}
METRIC_LABELS = {
    "accuracy": "accuracy",
    "perplexity": "perplexity",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bleu": "BLEU",
}


@dataclass
class Variant:
    name: str  # "baseline", "adapter" or "model"
    scores: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0
    peak_memory: int = 0
    energy: dict[str, Any] = field(default_factory=dict)
    predictions: list[str] = field(default_factory=list)


@dataclass
class EvalData:
    fmt: str
    rows: list[dict[str, Any]]
    labels: list[str]


def load_eval_data(ref: ArtifactRef, split: str, max_samples: int) -> EvalData:
    folder = Path(ref.path)
    meta = {**ds.load_meta(folder), **(ref.metadata or {})}
    rows = ds.load_split(folder, split)
    if not rows and split == "validation":
        raise NodeFailure(
            "split: the dataset has no held-out rows; give source.dataset a held-out share "
            "above 0, or evaluate on “train” or “all”"
        )
    if not rows:
        raise NodeFailure(f"split: the dataset has no rows in “{split}”")
    return EvalData(meta.get("format", "text"), rows[:max_samples], list(meta.get("labels") or []))


# --- scoring ------------------------------------------------------------------------------


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pad_right(seqs: list[list[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def sequence_nll(
    model, items: list[dict[str, list[int]]], pad_id: int, device: str, ctx=None
) -> list[tuple[float, int]]:
    """(sum of negative log-likelihood over label tokens, label token count) per item."""
    out: list[tuple[float, int]] = []
    for batch in _batches(items, BATCH):
        if ctx is not None:
            ctx.check_cancelled()
        ids, mask = _pad_right([it["input_ids"] for it in batch], pad_id, device)
        labels, _ = _pad_right([it["labels"] for it in batch], -100, device)
        labels[mask == 0] = -100
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        valid = targets != -100
        nll = -(picked * valid).sum(dim=1)
        out.extend(zip(nll.tolist(), valid.sum(dim=1).tolist(), strict=True))
    return out


def perplexity(model, tokenizer, data: EvalData, device: str, ctx=None) -> tuple[float, int]:
    encoded = encode_records(data.rows, data.fmt, tokenizer, MAX_LENGTH, data.labels)
    if not encoded.items:
        raise NodeFailure("no evaluation example has answer tokens after tokenization")
    scores = sequence_nll(model, encoded.items, tokenizer.pad_token_id, device, ctx)
    total, count = sum(s for s, _ in scores), sum(n for _, n in scores)
    return math.exp(min(total / max(count, 1), 50.0)), encoded.tokens


def classify(model, tokenizer, data: EvalData, device: str, ctx=None) -> tuple[float, list[str], int]:
    """(accuracy, predicted labels, tokens scored): the most likely label after the prompt."""
    items, owners = [], []
    for index, row in enumerate(data.rows):
        prompt = classification_prompt(row["text"], data.labels)
        for label in data.labels:
            encoded = encode_pair(Example(prompt, " " + label), tokenizer, MAX_LENGTH)
            if encoded is not None:
                items.append({"input_ids": encoded[0], "labels": encoded[1]})
                owners.append((index, label))
    scores = sequence_nll(model, items, tokenizer.pad_token_id, device, ctx)
    best: dict[int, tuple[float, str]] = {}
    for (index, label), (nll, _) in zip(owners, scores, strict=True):
        if index not in best or nll < best[index][0]:
            best[index] = (nll, label)
    predictions = [best.get(i, (0.0, ""))[1] for i in range(len(data.rows))]
    correct = sum(p == row["label"] for p, row in zip(predictions, data.rows, strict=True))
    return correct / len(data.rows), predictions, sum(len(it["input_ids"]) for it in items)


@torch.no_grad()
def generate(
    model, tokenizer, examples: list[Example], device: str, max_new_tokens: int, ctx=None
) -> tuple[list[str], int]:
    """Greedy answers (left-padded batches) and the number of tokens processed."""
    answers, tokens = [], 0
    pad = tokenizer.pad_token_id
    for batch in _batches(examples, BATCH):
        if ctx is not None:
            ctx.check_cancelled()
        prompts = [
            tokenizer(e.prompt, add_special_tokens=not e.templated)["input_ids"][-MAX_LENGTH:] for e in batch
        ]
        longest = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = out[:, longest:]
        tokens += int(mask.sum()) + int((new != pad).sum())
        answers.extend(tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in new)
    return answers, tokens


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        for key, score in scorer.score(reference, prediction).items():
            totals[key] += score.fmeasure
    return {key: value / max(len(predictions), 1) for key, value in totals.items()}


def bleu_score(predictions: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


# --- one variant ----------------------------------------------------------------------------


def score_variant(name: str, model, tokenizer, data: EvalData, params, device: str, ctx) -> Variant:
    variant = Variant(name)
    energy = EnergyMeter(device).start()
    with MemoryTracker(device) as memory:
        if "perplexity" in params.metrics:
            ctx.progress(0, None, f"{name}: perplexity")
            variant.scores["perplexity"], tokens = perplexity(model, tokenizer, data, device, ctx)
            variant.tokens += tokens
        if "accuracy" in params.metrics and data.fmt == "classification":
            ctx.progress(0, None, f"{name}: scoring {len(data.labels)} labels")
            variant.scores["accuracy"], variant.predictions, tokens = classify(
                model, tokenizer, data, device, ctx
            )
            variant.tokens += tokens
        if {"rouge", "bleu"} & set(params.metrics):
            ctx.progress(0, None, f"{name}: generating {len(data.rows)} answers")
            examples = [generation_prompt(r, data.fmt, tokenizer, data.labels) for r in data.rows]
            answers, tokens = generate(model, tokenizer, examples, device, params.max_new_tokens, ctx)
            references = [
                reference_answer(r, data.fmt) if data.fmt != "text" else e.completion.strip()
                for r, e in zip(data.rows, examples, strict=True)
            ]
            if "rouge" in params.metrics:
                variant.scores.update(rouge_scores(answers, references))
            if "bleu" in params.metrics:
                variant.scores["bleu"] = bleu_score(answers, references)
            variant.tokens += tokens
            variant.predictions = variant.predictions or answers
    energy.stop()
    variant.seconds, variant.peak_memory = energy.seconds, memory.peak_bytes
    variant.energy = energy.to_dict(params.price_per_device_hour)
    return variant


# --- the node -------------------------------------------------------------------------------


def _device(ctx) -> str:
    device = ctx.device or "cpu"
    return device if not device.startswith("cuda") or torch.cuda.is_available() else "cpu"


def _load_base(model_ref: ArtifactRef, adapter_meta: dict, device: str, ctx):
    folder = model_folder(model_ref, progress=ctx.progress)
    meta = model_ref.metadata or {}
    trust = bool(meta.get("trust_remote_code"))
    options = LoadOptions(device=device, dtype=meta.get("dtype", "auto"), trust_remote_code=trust)
    quant = adapter_meta.get("quantization")
    if quant and not bnb_4bit_problem(device):
        # Measure a QLoRA adapter on the 4-bit base it was trained on.
        options.load_in_4bit = True
        options.quant_type, options.double_quant = quant["quant_type"], quant["double_quant"]
        options.compute_dtype = quant["compute_dtype"]
    return folder, load_model(folder, options), trust


def evaluate(
    ctx, *, model_ref: ArtifactRef, dataset_ref: ArtifactRef, adapter_ref: ArtifactRef | None, params
) -> dict[str, ArtifactOut]:
    device = _device(ctx)
    data = load_eval_data(dataset_ref, params.split, params.max_samples)
    adapter_meta = dict(adapter_ref.metadata or {}) if adapter_ref else {}
    if adapter_meta.get("labels") and not data.labels:
        data.labels = list(adapter_meta["labels"])
    notes = _metric_notes(params, data)
    with cpu_threads(device, ctx.log):
        folder, base, trust = _load_base(model_ref, adapter_meta, device, ctx)
        tokenizer = load_tokenizer(folder, trust_remote_code=trust)
        variants = _run_variants(ctx, base, tokenizer, data, params, device, adapter_ref, adapter_meta, trust)
    report = build_report(variants, data, params, device, adapter_meta, notes)
    rep.write(Path(ctx.workdir) / "report.json", report)
    return {"report": ArtifactOut(ArtifactType.REPORT, Path(ctx.workdir) / "report.json", report)}


def _metric_notes(params, data: EvalData) -> list[str]:
    notes = []
    if "accuracy" in params.metrics and data.fmt != "classification":
        notes.append(f"accuracy needs a labelled (classification) dataset; this one is {data.fmt}: skipped")
    if "accuracy" in params.metrics and data.fmt == "classification" and len(data.labels) < 2:
        raise NodeFailure("accuracy needs at least two labels in the dataset")
    return notes


def _run_variants(
    ctx, base, tokenizer, data, params, device, adapter_ref, adapter_meta, trust
) -> list[Variant]:
    base.eval()
    if adapter_ref is None:
        return [score_variant("model", base, tokenizer, data, params, device, ctx)]
    if adapter_meta.get("format") == "full_model":
        variants = (
            [score_variant("baseline", base, tokenizer, data, params, device, ctx)]
            if params.compare_baseline
            else []
        )
        del base
        tuned = load_model(Path(adapter_ref.path), LoadOptions(device=device, trust_remote_code=trust)).eval()
        return [*variants, score_variant("adapter", tuned, tokenizer, data, params, device, ctx)]
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter_ref.path)).eval()
    variants = []
    if params.compare_baseline:
        with model.disable_adapter():
            variants.append(score_variant("baseline", model, tokenizer, data, params, device, ctx))
    variants.append(score_variant("adapter", model, tokenizer, data, params, device, ctx))
    return variants


# --- the report -----------------------------------------------------------------------------


def build_report(
    variants: list[Variant], data: EvalData, params, device: str, adapter_meta: dict, notes: list[str]
) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    metrics = [m for m in METRIC_LABELS if any(m in v.scores for v in variants)]
    summary, comparison = _quality(by_name, metrics)
    data_out = {
        "device": device,
        "device_name": device_name(device),
        "split": params.split,
        "examples": len(data.rows),
        "dataset_format": data.fmt,
        "labels": data.labels,
        "variants": {
            v.name: {
                "scores": v.scores,
                "seconds": round(v.seconds, 3),
                "tokens": v.tokens,
                "tokens_per_s": round(v.tokens / max(v.seconds, 1e-9), 1),
                "peak_memory_bytes": v.peak_memory,
                **v.energy,
            }
            for v in variants
        },
        "comparison": comparison,
        "training": adapter_meta.get("training"),
        "samples": _samples(variants, data),
    }
    seed_text = _seed_text(by_name)
    return rep.build(
        "evaluate",
        "Evaluation report",
        summary=summary,
        data=data_out,
        notes=([seed_text] if seed_text else []) + notes + _efficiency_notes(variants, adapter_meta),
        tables=[_quality_table(variants, metrics), _efficiency_table(variants, adapter_meta, params)],
        charts=_charts(variants, metrics),
    )


def _quality(by_name: dict[str, Variant], metrics: list[str]) -> tuple[list, dict]:
    summary: list[tuple[str, str]] = []
    comparison: dict[str, dict[str, float | None]] = {}
    base, tuned = by_name.get("baseline"), by_name.get("adapter")
    for metric in metrics:
        label = METRIC_LABELS[metric]
        if base and tuned and metric in base.scores and metric in tuned.scores:
            change = tuned.scores[metric] - base.scores[metric]
            comparison[metric] = {
                "baseline": base.scores[metric],
                "adapter": tuned.scores[metric],
                "change": change,
                "better": (change > 0) == HIGHER_IS_BETTER[metric],
            }
            summary += [
                (f"Baseline {label}", _num(base.scores[metric])),
                (f"Adapter {label}", _num(tuned.scores[metric])),
                ("Improvement" if metric == "accuracy" else f"{label} change", _signed(change)),
            ]
        else:
            only = tuned or by_name.get("model") or base
            if only and metric in only.scores:
                summary.append((label[0].upper() + label[1:], _num(only.scores[metric])))
    return summary, comparison


def _seed_text(by_name: dict[str, Variant]) -> str:
    """The seed's printout: "Baseline accuracy: 0.7892 / Adapter accuracy: 0.8430 / Improvement: 0.0538"."""
    base, tuned = by_name.get("baseline"), by_name.get("adapter")
    if not (base and tuned and "accuracy" in base.scores and "accuracy" in tuned.scores):
        return ""
    b, a = base.scores["accuracy"], tuned.scores["accuracy"]
    return f"Baseline accuracy: {b:.4f}\nAdapter accuracy:  {a:.4f}\nImprovement:      {a - b:.4f}"


def _quality_table(variants: list[Variant], metrics: list[str]) -> dict:
    names = [v.name for v in variants]
    rows = [[METRIC_LABELS[m], *[_num(v.scores.get(m)) for v in variants]] for m in metrics]
    return {"title": "Quality", "columns": ["Metric", *names], "rows": rows}


def _efficiency_table(variants: list[Variant], adapter_meta: dict, params) -> dict:
    rows = []
    training = adapter_meta.get("training")
    if training:
        hours = training.get("seconds", 0) / 3600
        cost = hours * params.price_per_device_hour if params.price_per_device_hour else None
        rows.append(
            [
                "training",
                f"{training.get('seconds', 0):.1f} s",
                f"{training.get('tokens_per_s', 0):,.0f}",
                rep.fmt_bytes(training.get("peak_memory_bytes")),
                _wh(training.get("energy_joules")),
                _cost(cost),
            ]
        )
    for v in variants:
        rows.append(
            [
                f"evaluation ({v.name})",
                f"{v.seconds:.1f} s",
                f"{v.tokens / max(v.seconds, 1e-9):,.0f}",
                rep.fmt_bytes(v.peak_memory),
                _wh(v.energy.get("energy_joules")),
                _cost(v.energy.get("cost")),
            ]
        )
    return {
        "title": "Efficiency",
        "columns": ["Phase", "Time", "Tokens/s", "Peak memory", "Energy", "Cost"],
        "rows": rows,
    }


def _efficiency_notes(variants: list[Variant], adapter_meta: dict) -> list[str]:
    sources = {v.energy.get("energy_source") for v in variants} | {
        (adapter_meta.get("training") or {}).get("energy_source")
    }
    return [f"energy: {s}" for s in sorted(s for s in sources if s)]


def _charts(variants: list[Variant], metrics: list[str]) -> list[dict]:
    charts = []
    bounded = [m for m in metrics if m != "perplexity"]
    if bounded:
        # BLEU is reported 0-100 by sacrebleu; shown /100 so every bar shares one 0-1 axis.
        series = {v.name: [_unit(m, v.scores.get(m)) for m in bounded] for v in variants}
        charts.append(
            rep.bar_chart("Quality (higher is better)", [METRIC_LABELS[m] for m in bounded], series)
        )
    if "perplexity" in metrics:
        series = {v.name: [v.scores.get("perplexity")] for v in variants}
        charts.append(rep.bar_chart("Perplexity (lower is better)", ["perplexity"], series))
    return charts


def _samples(variants: list[Variant], data: EvalData, limit: int = 5) -> list[dict[str, Any]]:
    samples = []
    for i, row in enumerate(data.rows[:limit]):
        shown = {k: v for k, v in row.items() if k not in ("output", "label")}
        if data.fmt == "chat":
            shown["messages"] = row["messages"][:-1]  # the last turn is the expected answer
        sample = {
            "input": shown,
            "expected": reference_answer(row, data.fmt) if data.fmt != "text" else None,
        }
        for v in variants:
            if i < len(v.predictions):
                sample[v.name] = v.predictions[i]
        samples.append(sample)
    return samples


def _unit(metric: str, value: float | None) -> float | None:
    if value is None:
        return None
    return value / 100 if metric == "bleu" else value


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _wh(joules: float | None) -> str:
    return "n/a" if joules is None else f"{joules / 3600:.4f} Wh"


def _cost(cost: float | None) -> str:
    return "n/a" if cost is None else f"{cost:.4f}"
