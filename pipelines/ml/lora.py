"""LoRA setup: which matrices to adapt, parameter counts, and the largest batch that fits."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.context import NodeFailure

# Attention projections per architecture (``config.model_type``), as in the LoRA/QLoRA papers'
# and the seed's recipes (q, k, v, o for Llama). Others fall back to peft's own table, then to
# every linear layer but the output head.
AUTO_TARGETS: dict[str, list[str]] = {
    **{
        t: ["q_proj", "k_proj", "v_proj", "o_proj"]
        for t in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "granite",
            "smollm3",
            "cohere",
            "starcoder2",
            "deepseek_v2",
        )
    },
    "phi3": ["qkv_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "gpt2": ["c_attn", "c_proj"],
    **{t: ["query_key_value", "dense"] for t in ("gpt_neox", "falcon", "bloom")},
}
NEVER_ADAPT = {"lm_head", "embed_out", "output"}


def linear_module_names(model) -> set[str]:
    """Leaf names of the model's linear layers (including bitsandbytes 4/8-bit ones)."""
    import torch

    names = set()
    linear_types: tuple[type, ...] = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb

        linear_types += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except Exception:  # noqa: BLE001, S110 - without bitsandbytes only torch layers exist
        pass
    for name, module in model.named_modules():
        if isinstance(module, linear_types):
            names.add(name.rsplit(".", 1)[-1])
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2 style projections

        names |= {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, Conv1D)}
    except ImportError:
        pass
    return names - NEVER_ADAPT


def choose_targets(model, requested: str | list[str]) -> tuple[list[str], str]:
    """(module names, how they were chosen). Unknown names are a NodeFailure naming the field."""
    available = linear_module_names(model)
    if requested != "auto":
        missing = [name for name in requested if name not in available]
        if missing:
            raise NodeFailure(
                f"target_modules: {', '.join(missing)} does not exist in this model; "
                f"its linear layers are {', '.join(sorted(available))}"
            )
        return list(requested), "as listed"
    model_type = getattr(model.config, "model_type", "")
    targets = AUTO_TARGETS.get(model_type)
    if targets is None:
        try:
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TABLE

            targets = PEFT_TABLE.get(model_type)
        except ImportError:
            targets = None
    targets = [t for t in (targets or []) if t in available]
    if targets:
        return targets, f"automatic for {model_type or 'this architecture'}"
    return sorted(available), "automatic: every linear layer (architecture not in the table)"


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total); peft's count unpacks 4-bit weights (two per stored byte)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trainable_line(trainable: int, total: int) -> str:
    return f"Trainable: {trainable:,} / {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)"


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def find_batch_size(fits: Callable[[int], None], start: int, minimum: int = 1) -> int:
    """The largest batch, halving from ``start``, for which ``fits(batch)`` does not run out of
    memory. ``fits`` raises an out-of-memory error (see ``is_oom``) when the batch is too big."""
    batch = max(start, minimum)
    while True:
        try:
            fits(batch)
            return batch
        except Exception as exc:
            if not is_oom(exc) or batch <= minimum:
                raise
            batch = max(minimum, batch // 2)


def oom_advice(method: str, batch_size, checkpointing: bool) -> str:
    tips = []
    if batch_size != 1:
        tips.append(
            "lower the batch size (or use “auto”) and raise gradient accumulation to keep the effective batch"
        )
    if not checkpointing:
        tips.append("turn on gradient checkpointing")
    if method != "qlora":
        tips.append("use QLoRA (4-bit base)")
    tips.append("lower the maximum length")
    return "out of memory on the device: " + "; ".join(tips)
