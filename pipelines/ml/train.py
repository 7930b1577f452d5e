"""LoRA / QLoRA / full fine-tuning with the transformers Trainer (the train.lora node).

The flow: resolve the device plan (QLoRA only where bitsandbytes' 4-bit kernels run, mixed
precision only on a GPU), load tokenizer and model, encode the dataset with the prompts of
``formatting`` (completion-only labels), wrap the model with peft, pick the batch size, then
``Trainer.train`` with a callback reporting progress. Checkpoints go to
``checkpoint_dir(ctx)`` every ``save_steps``; a node started again with the same folder
(a retried task after a lost worker) resumes from the last one. Outputs: the adapter folder in
PEFT format (optionally with a merged model inside) and a report.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from pipelines.context import ArtifactOut, ArtifactRef, NodeCancelled, NodeFailure
from pipelines.ml import datasets as ds
from pipelines.ml import report as rep
from pipelines.ml.formatting import Encoded, encode_records
from pipelines.ml.loading import (
    LoadOptions,
    bnb_4bit_problem,
    load_model,
    load_tokenizer,
    model_folder,
    quantized_method,
    uses_own_layers,
)
from pipelines.ml.lora import (
    choose_targets,
    count_parameters,
    find_batch_size,
    is_oom,
    oom_advice,
    trainable_line,
)
from pipelines.ml.metrics import EnergyMeter, MemoryTracker, cpu_threads, device_name, is_cuda
from pipelines.types import ArtifactType

OPTIMIZERS = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
    "sgd": "sgd",
}
AUTO_BATCH_MAX = 64
EVAL_LOSS_MAX_ITEMS = 256


@dataclass
class Plan:
    """What will actually run on this device, and every deviation from what was asked."""

    device: str
    method: str
    compute_dtype: str
    optimizer: str
    notes: list[str] = field(default_factory=list)
    threads: int = 0


def make_plan(ctx, params) -> Plan:
    device = ctx.device or "cpu"
    plan = Plan(
        device=device, method=params.method, compute_dtype=params.compute_dtype, optimizer=params.optimizer
    )
    if device.startswith("cuda") and not torch.cuda.is_available():
        plan.device = device = "cpu"
        _note(ctx, plan.notes, "no CUDA device here: training on the CPU")
    if plan.method == "qlora":
        problem = bnb_4bit_problem(device)
        if problem:
            plan.method = "lora"
            _note(
                ctx,
                plan.notes,
                f"QLoRA is not available ({problem}); falling back to LoRA on a full-precision base model",
            )
    if not is_cuda(device) and plan.compute_dtype != "fp32":
        plan.compute_dtype = "fp32"
        _note(
            ctx, plan.notes, f"compute precision {params.compute_dtype} needs a GPU; the CPU computes in fp32"
        )
    elif plan.compute_dtype == "bf16" and is_cuda(device) and not torch.cuda.is_bf16_supported():
        plan.compute_dtype = "fp16"
        _note(ctx, plan.notes, "this GPU has no bfloat16: computing in fp16")
    if plan.optimizer in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit") and not is_cuda(device):
        plan.optimizer = "adamw_torch"
        _note(ctx, plan.notes, f"the {params.optimizer} optimizer needs a GPU: using adamw_torch")
    return plan


def _note(ctx, notes: list[str], message: str) -> None:
    notes.append(message)
    ctx.log(message, level="warning")


def load_dataset_artifact(ref: ArtifactRef, task: str) -> tuple[str, list, list, list[str]]:
    """(format, train rows, validation rows, labels) of a DATASET artifact."""
    folder = Path(ref.path)
    meta = {**ds.load_meta(folder), **(ref.metadata or {})}
    fmt = meta.get("format")
    if fmt not in ds.FORMATS:
        raise NodeFailure("the dataset input is not a dataset artifact (no format in its metadata)")
    if task == "classification" and fmt != "classification":
        raise NodeFailure(f"task: classification needs a labelled dataset (text, label); this one is {fmt}")
    train_rows = ds.load_split(folder, "train")
    if not train_rows:
        raise NodeFailure("the dataset has no training rows")
    return fmt, train_rows, ds.load_split(folder, "validation"), list(meta.get("labels") or [])


def check_context(model, max_seq_length: int) -> None:
    context = getattr(model.config, "max_position_embeddings", None)
    if context and max_seq_length > context:
        raise NodeFailure(
            f"max_seq_length: {max_seq_length} tokens is longer than the model's context of {context}"
        )


def apply_method(model, params, plan: Plan, ctx) -> tuple[Any, list[str], str]:
    """Wrap the model for training; returns (model, target modules, how they were chosen)."""
    if plan.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model, [], "full fine-tune: every weight"
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets, how = choose_targets(model, params.target_modules)
    if plan.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=params.gradient_checkpointing
        )
    config = LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    ctx.log(f"LoRA on {', '.join(targets)} ({how}), r={params.r}, alpha={params.alpha}")
    return model, targets, how


class PadCollator:
    """Right-pads a batch: pad id for inputs, -100 for labels (never learned), 0 in the mask."""

    def __init__(self, pad_id: int, multiple_of: int = 1):
        self.pad_id, self.multiple_of = pad_id, multiple_of

    def __call__(self, items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        longest = math.ceil(longest / self.multiple_of) * self.multiple_of
        ids = torch.full((len(items), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_collator(tokenizer, params, plan: Plan):
    if params.packing:
        # Padding-free packing: a batch is one row of concatenated examples whose position ids
        # restart at 0; transformers then builds a block-diagonal causal mask from the position
        # ids (flash-attention varlen on GPUs), so examples never attend to each other.
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    return PadCollator(tokenizer.pad_token_id, multiple_of=8 if is_cuda(plan.device) else 1)


def auto_batch_size(model, encoded: Encoded, plan: Plan, ctx) -> tuple[int, str]:
    """The largest batch that fits: a trial step halving on OOM on a GPU, an estimate on a CPU
    (where running out of memory kills the process instead of raising)."""
    start = min(AUTO_BATCH_MAX, 1 << max(0, len(encoded.items) - 1).bit_length())
    longest = max(len(item["input_ids"]) for item in encoded.items)
    if is_cuda(plan.device):

        def trial(batch: int) -> None:
            ids = torch.randint(0, model.config.vocab_size, (batch, longest), device=plan.device)
            try:
                model(input_ids=ids, labels=ids).loss.backward()
            finally:
                model.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()

        batch = find_batch_size(trial, start)
        return batch, f"largest batch that fit a trial step of {longest} tokens"
    config = model.config
    # float32 activations (~34 values per hidden unit per layer, doubled for their gradients)
    # plus logits, their softmax and gradient.
    per_example = longest * (
        config.hidden_size * config.num_hidden_layers * 34 * 2 * 4 + config.vocab_size * 4 * 3
    )
    budget = psutil.virtual_memory().available // 2
    fitting = max(1, budget // max(per_example, 1))
    batch = min(start, 1 << (fitting.bit_length() - 1))
    return batch, f"estimated from free memory on the CPU ({rep.fmt_bytes(budget)} budget)"


def training_arguments(params, plan: Plan, out_dir: Path, batch_size: int, packing: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        optim=OPTIMIZERS[plan.optimizer],
        bf16=plan.compute_dtype == "bf16",
        fp16=plan.compute_dtype == "fp16",
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=2,
        seed=params.seed,
        data_seed=params.seed,
        use_cpu=not is_cuda(plan.device),
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="random" if packing else "group_by_length",
    )


def checkpoint_dir(ctx) -> Path:
    """Where checkpoints go: ``ctx.checkpoint_dir`` when the engine keeps one across attempts
    of a node (a worker lost mid-training), else ``<workdir>/checkpoints``."""
    folder = getattr(ctx, "checkpoint_dir", None)
    return Path(folder) if folder else Path(ctx.workdir) / "checkpoints"


def last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train(ctx, *, model_ref: ArtifactRef, dataset_ref: ArtifactRef, params) -> dict[str, ArtifactOut]:
    """The train.lora node: returns {"adapter": ..., "report": ...}."""
    plan = make_plan(ctx, params)
    with cpu_threads(plan.device, ctx.log) as threads:
        plan.threads = threads
        return _train(ctx, plan, model_ref, dataset_ref, params)


def _train(
    ctx, plan: Plan, model_ref: ArtifactRef, dataset_ref: ArtifactRef, params
) -> dict[str, ArtifactOut]:
    started = time.perf_counter()
    fmt, train_rows, validation_rows, labels = load_dataset_artifact(dataset_ref, params.task)
    folder = model_folder(model_ref, progress=ctx.progress)
    trust = bool((model_ref.metadata or {}).get("trust_remote_code"))
    tokenizer = load_tokenizer(folder, trust_remote_code=trust)
    encoded = encode_records(train_rows, fmt, tokenizer, params.max_seq_length, labels)
    if not encoded.items:
        raise NodeFailure("the dataset has no example with something to learn after tokenization")
    model = _load(folder, model_ref, params, plan, trust)
    check_context(model, params.max_seq_length)
    model.config.use_cache = False  # the KV cache is useless in training and costs memory
    model, targets, how = apply_method(model, params, plan, ctx)
    trainable, total = count_parameters(model)
    ctx.log(trainable_line(trainable, total))
    batch, batch_reason = _batch(model, encoded, params, plan, ctx)
    result = _fit(ctx, model, tokenizer, encoded, validation_rows, fmt, labels, params, plan, batch)
    adapter_dir = _save(ctx, model, tokenizer, folder, params, plan, trust)
    facts = {
        "format": fmt,
        "labels": labels,
        "targets": targets,
        "targets_how": how,
        "trainable": trainable,
        "total": total,
        "batch": batch,
        "batch_reason": batch_reason,
        "encoded": encoded,
        "train_rows": len(train_rows),
        "seconds": time.perf_counter() - started,
    }
    return _outputs(ctx, model_ref, params, plan, adapter_dir, result, facts)


def _load(folder: Path, model_ref: ArtifactRef, params, plan: Plan, trust: bool):
    meta = model_ref.metadata or {}
    if uses_own_layers(folder):
        raise NodeFailure(
            f"this model was quantized with {quantized_method(folder)}, whose layers LoRA cannot train: "
            "connect the unquantized model and choose the QLoRA method (a 4-bit base made for training)"
        )
    options = LoadOptions(
        device=plan.device,
        dtype=meta.get("dtype", "auto"),
        load_in_4bit=plan.method == "qlora",
        quant_type=params.quant_type,
        double_quant=params.double_quant,
        compute_dtype=plan.compute_dtype,
        trust_remote_code=trust,
    )
    return load_model(folder, options)


def _batch(model, encoded: Encoded, params, plan: Plan, ctx) -> tuple[int, str]:
    if params.batch_size != "auto":
        return int(params.batch_size), "as set"
    try:
        batch, reason = auto_batch_size(model, encoded, plan, ctx)
    except Exception as exc:
        if is_oom(exc):
            raise NodeFailure(oom_advice(plan.method, 1, params.gradient_checkpointing)) from exc
        raise
    ctx.log(f"auto batch size: {batch} ({reason})")
    return batch, reason


@dataclass
class FitResult:
    callback: Any
    global_step: int
    resumed_from: int
    train_seconds: float
    tokens_per_s: float
    tokens: int
    peak_memory: int
    energy: EnergyMeter
    final_loss: float | None
    validation_loss: float | None


def _fit(ctx, model, tokenizer, encoded, validation_rows, fmt, labels, params, plan, batch) -> FitResult:
    from transformers import PrinterCallback, Trainer

    from pipelines.ml.callbacks import NodeProgressCallback

    checkpoints = checkpoint_dir(ctx)
    resume = last_checkpoint(checkpoints)
    if resume:
        ctx.log(f"resuming from {Path(resume).name} (a previous attempt of this node saved it)")
    eval_items = encode_records(validation_rows, fmt, tokenizer, params.max_seq_length, labels).items
    memory = MemoryTracker(plan.device)
    callback = NodeProgressCallback(ctx, memory)
    trainer = Trainer(
        model=model,
        args=training_arguments(params, plan, checkpoints, batch, params.packing),
        data_collator=make_collator(tokenizer, params, plan),
        train_dataset=encoded.items,
        eval_dataset=eval_items[:EVAL_LOSS_MAX_ITEMS] or None,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the run page, not to stdout
    energy = EnergyMeter(plan.device).start()
    with memory:
        try:
            output = trainer.train(resume_from_checkpoint=resume)
            validation_loss = trainer.evaluate()["eval_loss"] if eval_items else None
        except NodeCancelled:
            raise
        except Exception as exc:
            if is_oom(exc):
                raise NodeFailure(oom_advice(plan.method, batch, params.gradient_checkpointing)) from exc
            raise
    energy.stop()
    state = trainer.state
    seconds = float(output.metrics.get("train_runtime", energy.seconds))
    tokens = (state.num_input_tokens_seen or 0) - callback.start_tokens  # this attempt's, not a resumed one's
    return FitResult(
        callback=callback,
        global_step=state.global_step,
        resumed_from=callback.resumed_from,
        train_seconds=seconds,
        tokens_per_s=tokens / max(seconds, 1e-9),
        tokens=tokens,
        peak_memory=memory.peak_bytes,
        energy=energy,
        final_loss=callback.losses[-1][1] if callback.losses else None,
        validation_loss=validation_loss,
    )


def _save(ctx, model, tokenizer, base_folder: Path, params, plan: Plan, trust: bool) -> Path:
    """adapter/ in PEFT format (or the whole model for a full fine-tune), tokenizer alongside;
    adapter/merged/ with the adapter merged into a full-precision base when asked."""
    out = Path(ctx.workdir) / "adapter"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if params.merge_adapter and plan.method != "full":
        ctx.progress(1, 1, "merging the adapter into the base model")
        merge_adapter(base_folder, out, out / "merged", device=plan.device, trust_remote_code=trust)
    shutil.rmtree(checkpoint_dir(ctx), ignore_errors=True)  # done: nothing to resume
    return out


def merge_adapter(
    base_folder: Path, adapter_dir: Path, out: Path, *, device: str = "cpu", trust_remote_code: bool = False
) -> Path:
    """Base (reloaded in full precision, also after QLoRA) + adapter, merged and saved."""
    from peft import PeftModel

    base = load_model(base_folder, LoadOptions(device=device, trust_remote_code=trust_remote_code))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    load_tokenizer(base_folder, trust_remote_code=trust_remote_code).save_pretrained(str(out))
    return out


def _outputs(ctx, model_ref, params, plan: Plan, adapter_dir: Path, fit: FitResult, facts) -> dict:
    encoded: Encoded = facts["encoded"]
    training = {
        "seconds": round(fit.train_seconds, 3),
        "steps": fit.global_step,
        "resumed_from_step": fit.resumed_from,
        "tokens_per_s": round(fit.tokens_per_s, 1),
        "tokens": fit.tokens,
        "peak_memory_bytes": fit.peak_memory,
        "device": plan.device,
        "device_name": device_name(plan.device),
        "cpu_threads": plan.threads,
        **fit.energy.to_dict(),
    }
    losses = fit.callback.losses
    data = {
        "method": plan.method,
        "requested_method": params.method,
        "target_modules": facts["targets"],
        "target_modules_how": facts["targets_how"],
        "r": params.r,
        "alpha": params.alpha,
        "trainable_parameters": facts["trainable"],
        "total_parameters": facts["total"],
        "batch_size": facts["batch"],
        "batch_size_reason": facts["batch_reason"],
        "compute_dtype": plan.compute_dtype,
        "optimizer": plan.optimizer,
        "dataset_format": facts["format"],
        "labels": facts["labels"],
        "train_rows": facts["train_rows"],
        "train_examples": len(encoded.items),
        "train_tokens": encoded.tokens,
        "truncated_examples": encoded.truncated,
        "dropped_examples": encoded.dropped,
        "losses": losses,
        "learning_rates": fit.callback.learning_rates,
        "first_loss": losses[0][1] if losses else None,
        "final_loss": fit.final_loss,
        "validation_loss": fit.validation_loss,
        "training": training,
        "notes": plan.notes,
        "node_seconds": round(facts["seconds"], 3),
    }
    report = rep.build(
        "train.lora",
        "Fine-tuning report",
        summary=_summary(data),
        notes=_notes(data),
        charts=[rep.line_chart("Training loss", losses, name="loss")] if losses else [],
        data=data,
    )
    rep.write(Path(ctx.workdir) / "report.json", report)
    merged = (adapter_dir / "merged").is_dir()
    adapter_meta = {
        "format": "full_model" if plan.method == "full" else "peft",
        "method": plan.method,
        "base_model": dict(model_ref.metadata or {}),
        "target_modules": facts["targets"],
        "r": params.r,
        "alpha": params.alpha,
        "task": "classification" if facts["format"] == "classification" else "generation",
        "dataset_format": facts["format"],
        "labels": facts["labels"],
        "merged": "merged" if merged else None,
        "trainable_parameters": facts["trainable"],
        "total_parameters": facts["total"],
        "training": training,
        "quantization": {
            "quant_type": params.quant_type,
            "double_quant": params.double_quant,
            "compute_dtype": plan.compute_dtype,
        }
        if plan.method == "qlora"
        else None,
    }
    return {
        "adapter": ArtifactOut(ArtifactType.ADAPTER, adapter_dir, adapter_meta),
        "report": ArtifactOut(ArtifactType.REPORT, Path(ctx.workdir) / "report.json", report),
    }


def _summary(data: dict) -> list[tuple[str, Any]]:
    training = data["training"]
    rows = [
        ("Method", data["method"].upper() if data["method"] != "full" else "Full fine-tune"),
        ("Trainable parameters", f"{data['trainable_parameters']:,} / {data['total_parameters']:,}"),
        ("Target modules", ", ".join(data["target_modules"]) or "all"),
        ("Steps", str(training["steps"])),
        ("Loss", f"{_f(data['first_loss'])} → {_f(data['final_loss'])}"),
    ]
    if data["validation_loss"] is not None:
        rows.append(("Validation loss", _f(data["validation_loss"])))
    rows += [
        ("Batch size", f"{data['batch_size']} ({data['batch_size_reason']})"),
        ("Training time", f"{training['seconds']:.1f} s"),
        ("Tokens per second", f"{training['tokens_per_s']:,.0f}"),
        ("Peak memory", rep.fmt_bytes(training["peak_memory_bytes"])),
    ]
    return rows


def _notes(data: dict) -> list[str]:
    notes = [trainable_line(data["trainable_parameters"], data["total_parameters"]), *data["notes"]]
    if data["training"]["resumed_from_step"]:
        notes.append(f"resumed from the checkpoint at step {data['training']['resumed_from_step']}")
    if data["truncated_examples"]:
        notes.append(f"{data['truncated_examples']} examples were cut to the maximum length")
    if data["dropped_examples"]:
        notes.append(f"{data['dropped_examples']} examples had no answer left after cutting and were skipped")
    notes.append(f"energy: {data['training']['energy_source']}")
    return notes


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
