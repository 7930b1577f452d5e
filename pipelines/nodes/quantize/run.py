"""quantize: the model in fewer bits, plus a report of size, speed and quality before/after.

Steps: load the model and measure it (perplexity on held-out text, generation speed);
quantize; save (safetensors + quantization_config.json); load the saved folder back, check
it computes exactly what was saved, and measure it again. The "after" numbers are those of
the artifact as downstream nodes will load it.
"""

from __future__ import annotations

import gc
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.context import ArtifactOut, ArtifactRef, NodeContext, NodeFailure
from pipelines.types import ArtifactType

METHOD_LABELS = {
    "int8_symmetric": "int8 (symmetric)",
    "int8_asymmetric": "int8 (asymmetric)",
    "int8_dynamic": "int8 dynamic (CPU)",
    "torchao_int8_weight_only": "int8 weight-only (torchao)",
    "bnb_nf4": "NF4 (bitsandbytes)",
    "bnb_fp4": "FP4 (bitsandbytes)",
    "bnb_int8": "LLM.int8() (bitsandbytes)",
    "ternary_b158": "1-bit (ternary b1.58)",
    "mixed": "Mixed precision",
}
# Input metadata that points at the unquantized weights: never passed on to the output.
LOCATION_KEYS = {"model_path", "hub_id", "revision", "source", "path", "quantization", "loader"}
PROBE_TOKENS = 16


class Stages:
    """Maps each step's own progress onto one bar for the node."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx

    def hooks(self, start: float, end: float):
        from pipelines.quant.hooks import Hooks

        def progress(done: float, total: float | None = None, message: str = "", **metrics: Any) -> None:
            share = (done / total) if total else 0.0
            self.ctx.progress(start + (end - start) * min(1.0, share), 100, message, **metrics)

        return Hooks(
            progress=progress,
            metric=self.ctx.metric,
            log=self.ctx.log,
            check_cancelled=self.ctx.check_cancelled,
        )

    def at(self, percent: float, message: str) -> None:
        self.ctx.check_cancelled()
        self.ctx.progress(percent, 100, message)


def run(ctx: NodeContext, inputs: dict[str, Any], params) -> dict[str, ArtifactOut]:
    from pipelines.quant.methods import Options

    started = time.perf_counter()
    stages = Stages(ctx)
    options = Options.from_params(params)
    stages.at(0, "loading the model")
    job = _prepare(ctx, inputs, options)
    stages.at(5, "measuring the original model")
    before = _measure(job.model, job.tokenizer, job.texts.held_out)
    stages.at(15, f"quantizing with {METHOD_LABELS[options.method]}")
    quant_started = time.perf_counter()
    job.model, details = _quantize(job, options, stages.hooks(15, 65))
    quant_seconds = time.perf_counter() - quant_started
    stages.at(65, "saving the quantized model")
    out = Path(ctx.workdir) / "model"
    config, expected = _save_and_probe(job, out, options, details)
    stages.at(75, "loading the saved model back and measuring it")
    after, per_layer, reload_diff = _verify_and_measure(ctx, job, out, config, expected)

    report = _report(
        options=options,
        device=job.device,
        folder=job.folder,
        out=out,
        before=before,
        after=after,
        per_layer=per_layer,
        details=details,
        texts=job.texts.to_dict(),
        reload_diff=reload_diff,
        seconds={"quantize": round(quant_seconds, 3), "total": round(time.perf_counter() - started, 3)},
        parameters=_parameter_count(job.folder),
    )
    (out / "quantization_report.json").write_text(json.dumps(report, indent=2))
    ctx.progress(100, 100, report["summary"])
    for name in ("compression_ratio", "bits_per_weight", "perplexity_after", "tokens_per_s_after"):
        if report.get(name) is not None:
            ctx.metric(name, float(report[name]))
    return {
        "model": ArtifactOut(ArtifactType.MODEL, out, _model_metadata(inputs["model"], report)),
        "report": ArtifactOut(ArtifactType.REPORT, None, report),
    }


@dataclass
class Job:
    folder: Path
    device: str
    tokenizer: Any
    model: Any
    names: list[str]  # the linear layers to quantize
    texts: Any  # pipelines.quant.texts.TextSplit
    probe: Any  # token ids whose logits must survive saving and loading unchanged


def _prepare(ctx: NodeContext, inputs: dict[str, Any], options) -> Job:
    """Load and check everything before spending time on measuring."""
    from pipelines.ml.loading import load_tokenizer, model_folder

    folder = model_folder(inputs["model"], progress=ctx.progress)
    _refuse_quantized(folder)
    texts = _texts(inputs.get("dataset"))
    device = "cpu" if options.method == "int8_dynamic" else ctx.device
    tokenizer = load_tokenizer(folder)
    model = _load_plain(folder, device)
    names = _check_runnable(model, options, device)
    return Job(folder, device, tokenizer, model, names, texts, _probe_ids(tokenizer, texts.held_out))


def _save_and_probe(job: Job, out: Path, options, details: dict):
    """Save, then run the in-memory model once on the probe. In this order because bitsandbytes
    repacks 4-bit weights at the first forward pass on a CPU (see backends.bnb_load)."""
    from pipelines.quant import backends, metrics

    config = _save(job.model, out, options, job.folder, details)
    with backends.bnb_guard(options.method, job.device):
        expected = metrics.logits(job.model, job.probe)
    job.model = None
    gc.collect()
    return config, expected


def _verify_and_measure(ctx: NodeContext, job: Job, out: Path, config: dict, expected):
    """The artifact as downstream nodes load it: same logits as before saving, then measured."""
    from pipelines.quant import metrics

    reloaded = _load_saved(out, job.device)
    reload_diff = float((metrics.logits(reloaded, job.probe) - expected).abs().max())
    if reload_diff:
        ctx.log(f"the reloaded model differs from the saved one by up to {reload_diff:g}", "warning")
    after = _measure(reloaded, job.tokenizer, job.texts.held_out)
    layer_names = [n for n, c in config["modules"].items() if c["type"] != "tied"]
    per_layer = metrics.per_layer_report(reloaded, layer_names, metrics.OriginalWeights(job.folder))
    del reloaded
    gc.collect()
    return after, per_layer, reload_diff


# -- inputs --------------------------------------------------------------------------------------


def _refuse_quantized(folder: Path) -> None:
    from pipelines.quant.io import read_quant_config

    existing = read_quant_config(folder)
    try:
        hf_quant = json.loads((folder / "config.json").read_text()).get("quantization_config")
    except (OSError, ValueError):
        hf_quant = None
    if existing or hf_quant:
        method = (existing or {}).get("method") or (hf_quant or {}).get("quant_method", "unknown")
        raise NodeFailure(
            f"this model is already quantized ({method}); connect the original, unquantized model "
            "to the Quantize node"
        )


def _texts(dataset: ArtifactRef | None):
    from pipelines.quant.texts import builtin_split, dataset_split

    if dataset is None:
        return builtin_split()
    try:
        return dataset_split(Path(dataset.path))
    except ValueError as exc:
        raise NodeFailure(
            f"{exc}: connect a dataset that has text (instruction, chat, text or labelled rows), "
            "or disconnect it to calibrate on built-in sample text"
        ) from exc


def _load_plain(folder: Path, device: str):
    from pipelines.ml.loading import LoadOptions, load_model

    model = load_model(folder, LoadOptions(device=device))
    return model.eval()


def _check_runnable(model, options, device: str) -> list[str]:
    """The layers to quantize; fails early, before any measuring, when the method cannot run."""
    from pipelines.quant import backends
    from pipelines.quant.methods import linear_names

    names = linear_names(model, options)
    if options.method in backends.BNB_METHODS:
        widths = {n: model.get_submodule(n).out_features for n in names}
        backends.check_bnb(options.method, device, widths)
    elif options.method == "int8_dynamic" and (problem := backends.dynamic_problem()):
        raise NodeFailure(f"dynamic int8 cannot run here: {problem}; choose int8_symmetric")
    elif options.method == "torchao_int8_weight_only" and (problem := backends.torchao_problem()):
        raise NodeFailure(
            f"{problem}; install torchao on the worker, or choose int8_symmetric (the same format)"
        )
    if options.method == "mixed":
        from pipelines.quant.methods import check_budget

        check_budget(model, options)
    return names


# -- steps ---------------------------------------------------------------------------------------


def _measure(model, tokenizer, held_out: list[str]) -> dict[str, float]:
    from pipelines.quant import metrics

    try:
        ppl = metrics.perplexity(model, tokenizer, held_out)
    except ValueError as exc:
        raise NodeFailure(f"{exc}: connect a dataset with longer held-out rows") from exc
    return {"perplexity": ppl, "tokens_per_s": metrics.tokens_per_second(model, tokenizer)}


def _probe_ids(tokenizer, held_out: list[str]):
    import torch

    from pipelines.quant.metrics import token_stream

    ids = token_stream(tokenizer, held_out, PROBE_TOKENS)
    return torch.tensor([ids or [0, 1]])


def _quantize(job: Job, options, hooks):
    from pipelines.quant import backends, metrics
    from pipelines.quant.methods import Data, quantize

    if options.method in backends.BNB_METHODS:
        job.model = None  # transformers quantizes while loading: start again from the folder
        gc.collect()
        hooks.progress(0, 1, "loading the model through bitsandbytes")
        skip = [n for n, _ in _all_linears(job.folder) if n not in job.names]
        quantized = backends.bnb_load(
            job.folder,
            options.method,
            device=job.device,
            double_quant=options.double_quant,
            compute_dtype=options.compute_dtype,
            skip=skip,
        )
        return quantized, {"compute_dtype": options.compute_dtype, "double_quant": options.double_quant}

    data = Data(job.tokenizer, job.texts.train, job.texts.held_out)

    def evaluate(m):
        return metrics.perplexity(m, job.tokenizer, job.texts.held_out)

    return quantize(job.model, options, data, hooks, evaluate=evaluate)


def _all_linears(folder: Path):
    """Linear layer names from the architecture alone (meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
    return [(n, m) for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)]


def _save(model, out: Path, options, folder: Path, details: dict) -> dict:
    from pipelines.quant.io import save_quantized

    extra = {
        "granularity": "per_channel" if options.per_channel else "per_tensor",
        "skip_modules": options.skip,
        "details": _jsonable(details),
    }
    return save_quantized(model, out, method=options.method, source=folder, extra=extra)


def _load_saved(out: Path, device: str):
    from pipelines.quant.io import load_quantized

    try:
        return load_quantized(out, device=device)
    except Exception as exc:  # noqa: BLE001 - a saved model that does not load is a bug to report
        raise NodeFailure(f"the quantized model was saved but does not load back ({exc})") from exc


def _parameter_count(folder: Path) -> int:
    from safetensors import safe_open

    from pipelines.quant.metrics import weight_files

    total = 0
    for path in weight_files(folder):
        with safe_open(str(path), framework="pt") as handle:
            total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118
    return total


# -- report -------------------------------------------------------------------------------------


def _report(
    *,
    options,
    device,
    folder,
    out,
    before,
    after,
    per_layer,
    details,
    texts,
    reload_diff,
    seconds,
    parameters,
) -> dict[str, Any]:
    from pipelines.quant.methods import PRECISION
    from pipelines.quant.metrics import folder_weight_bytes

    bytes_before, bytes_after = folder_weight_bytes(folder), folder_weight_bytes(out)
    # "bits per weight" is the method's: over the quantized linear layers (an int8 embedding,
    # stored alongside by some methods, is listed per layer but not averaged in).
    linear = [r for r in per_layer if r.get("kind") == "linear"] or per_layer
    quantized_params = sum(r.get("params") or 0 for r in linear)
    stored_bits = sum((r.get("bits_per_weight") or 0) * (r.get("params") or 0) for r in linear)
    ppl0, ppl1 = before["perplexity"], after["perplexity"]
    report: dict[str, Any] = {
        "kind": "quantize",
        "method": options.method,
        "method_label": METHOD_LABELS[options.method],
        "precision": PRECISION[options.method],
        "device": device,
        "granularity": "per_channel" if options.per_channel else "per_tensor",
        "parameters": parameters,
        "quantized_params": quantized_params,
        "layers_quantized": len(linear),
        "skip_modules": options.skip,
        "bytes_before": bytes_before,
        "bytes_after": bytes_after,
        "compression_ratio": round(bytes_before / max(bytes_after, 1), 3),
        "size_ratio": round(bytes_after / max(bytes_before, 1), 4),
        "bits_per_weight": round(stored_bits / quantized_params, 3) if quantized_params else None,
        "bits_per_param_overall": round(bytes_after * 8 / parameters, 3) if parameters else None,
        "perplexity_before": round(ppl0, 4),
        "perplexity_after": round(ppl1, 4),
        "perplexity_change_pct": round((ppl1 / ppl0 - 1) * 100, 3),
        "tokens_per_s_before": round(before["tokens_per_s"], 2),
        "tokens_per_s_after": round(after["tokens_per_s"], 2),
        "speedup": round(after["tokens_per_s"] / max(before["tokens_per_s"], 1e-9), 3),
        "train_time_s": (details.get("qat") or {}).get("seconds", 0.0),
        "seconds": seconds,
        "reload_max_abs_diff": reload_diff,
        "text": texts,
        "per_layer": per_layer,
        "details": _jsonable(details),
    }
    if "perplexity_ptq" in details:
        report["perplexity_ptq"] = round(details["perplexity_ptq"], 4)
        report["qat_recovered_pct"] = round(
            (details["perplexity_ptq"] - ppl1) / details["perplexity_ptq"] * 100, 3
        )
    report["summary"] = _summary(report)
    report["charts"] = _charts(report)
    return report


def _summary(r: dict[str, Any]) -> str:
    text = (
        f"{r['method_label']}: {r['bytes_before'] / 2**20:.2f} MB -> {r['bytes_after'] / 2**20:.2f} MB "
        f"({r['compression_ratio']}x smaller, {r['bits_per_weight']} bits per quantized weight); "
        f"perplexity {r['perplexity_before']:.2f} -> {r['perplexity_after']:.2f} "
        f"({r['perplexity_change_pct']:+.1f}%); "
        f"{r['tokens_per_s_before']:.1f} -> {r['tokens_per_s_after']:.1f} tokens/s"
    )
    if "perplexity_ptq" in r:
        text += (
            f"; ternary without training would have had perplexity {r['perplexity_ptq']:.2f}, "
            f"quantization-aware training brought it to {r['perplexity_after']:.2f}"
        )
    return text


def _charts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Before/after bars plus the per-layer error, in a neutral shape the run page can draw."""
    charts = [
        {
            "title": "Size (MB)",
            "type": "bar",
            "labels": ["before", "after"],
            "values": [round(r["bytes_before"] / 2**20, 4), round(r["bytes_after"] / 2**20, 4)],
        },
        {
            "title": "Perplexity (lower is better)",
            "type": "bar",
            "labels": ["before", "after"],
            "values": [r["perplexity_before"], r["perplexity_after"]],
        },
        {
            "title": "Generation speed (tokens/s)",
            "type": "bar",
            "labels": ["before", "after"],
            "values": [r["tokens_per_s_before"], r["tokens_per_s_after"]],
        },
    ]
    if "perplexity_ptq" in r:
        charts[1]["labels"] = ["before", "ternary, no training", "after training"]
        charts[1]["values"] = [r["perplexity_before"], r["perplexity_ptq"], r["perplexity_after"]]
    errors = [(row["name"], row["relative_error"]) for row in r["per_layer"] if "relative_error" in row]
    if errors:
        charts.append(
            {
                "title": "Relative weight error per layer",
                "type": "bar",
                "labels": [n for n, _ in errors],
                "values": [round(e, 5) for _, e in errors],
            }
        )
    return charts


def _model_metadata(ref: ArtifactRef, report: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (ref.metadata or {}).items() if k not in LOCATION_KEYS}
    base = meta.get("name") or "model"
    meta.update(
        {
            "name": f"{base} ({report['method_label']})",
            "quantized_from": base,
            "method": report["method"],
            "precision": report["precision"],
            "bits_per_weight": report["bits_per_weight"],
            "bytes": report["bytes_after"],
            "device": report["device"],
            "quantization": {
                "method": report["method"],
                "loader": "pipelines.quant.io.load_quantized",
                "config_file": "quantization_config.json",
            },
        }
    )
    return meta


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: float(o) if hasattr(o, "__float__") else str(o)))
