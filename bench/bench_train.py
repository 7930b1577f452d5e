"""Training throughput: the train.lora node against the seed's reference recipe.

The reference is a plain script: tokenize each example (prompt + answer), the transformers
Trainer with ``DataCollatorForLanguageModeling`` (dynamic padding), the same LoRA config
(r=16, alpha=32, q/k/v/o), model, data, batch, sequence length, steps, optimizer and
precision. Both count the same tokens (non-padding input tokens over Trainer's
``train_runtime``). Each side runs in its own subprocess, so peak memory (CUDA allocator peak,
or sampled RSS on a CPU) is its own. Prints tokens/s for both, the ratio (goal >= 1.0) and
peak memory.

    .venv/bin/python bench/bench_train.py [--steps 80] [--batch 8] [--seq 128] [--rounds 2]
    .venv/bin/python bench/bench_train.py --qlora-7b     # on a GPU: QLoRA NF4, Llama-7B shape

The model is the demo model's shape (1.6M parameters) with random weights (speed does not
depend on what the weights learned); with --qlora-7b, a Llama-2-7B-shaped model with random
bf16 weights is written once to a temporary folder and both sides load it in 4 bits (NF4,
double quantization, bf16 compute); MFU is reported against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL = 1.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# Dense bf16 peak of common GPUs (TFLOP/s, without sparsity), for MFU.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def make_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Instruction rows of varied length from the shipped corpus: continue a sentence."""
    from pipelines.ml.demo import corpus_lines

    rng = random.Random(seed)
    lines = corpus_lines()
    rows = []
    for _ in range(n):
        text = " ".join(rng.sample(lines, rng.randint(1, 4))).split()
        cut = max(1, len(text) // 3)
        rows.append(
            {
                "instruction": "Continue the text.",
                "input": " ".join(text[:cut]),
                "output": " ".join(text[cut:]),
            }
        )
    return rows


def build_small_model(folder: Path) -> None:
    from pipelines.ml.demo import DemoConfig, build_demo_model

    build_demo_model(folder, DemoConfig(steps=0))


def build_7b_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipelines.ml.demo import corpus_lines, train_tokenizer

    if (folder / "config.json").is_file():
        return
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    )
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer = train_tokenizer(corpus_lines(), 4096)
    tokenizer.model_max_length = 4096
    tokenizer.save_pretrained(folder)


def dataset_folder(folder: Path, rows: list[dict]) -> Path:
    from pipelines.ml import datasets as ds

    parsed = ds.ParsedDataset("instruction", rows)
    ds.write_dataset(folder, parsed=parsed, train=rows, validation=[])
    return folder


# --- one side per subprocess -----------------------------------------------------------------


def run_node(args) -> dict:
    from pipelines.context import ArtifactRef
    from pipelines.ml.train import train
    from pipelines.nodes.train_lora.spec import TrainLoraParams
    from pipelines.types import ArtifactType
    from tests.pipelines.ml.conftest import RecordingContext

    params = TrainLoraParams(
        method="qlora" if args.qlora else "lora",
        r=16,
        alpha=32,
        dropout=0.05,
        target_modules=TARGETS,
        learning_rate=2e-4,
        max_steps=args.steps,
        batch_size=args.batch,
        max_seq_length=args.seq,
        logging_steps=10,
        save_steps=10**6,
        compute_dtype=args.compute,
        warmup_ratio=0.03,
        max_grad_norm=0.3,
        lr_scheduler="constant",
    )
    model = ArtifactRef(
        ArtifactType.MODEL, None, {"source": "local", "model_path": args.model, "dtype": "auto"}
    )
    data = ArtifactRef(ArtifactType.DATASET, Path(args.data), {})
    ctx = RecordingContext(Path(tempfile.mkdtemp(prefix="bench-node-")), device=args.device)
    training = train(ctx, model_ref=model, dataset_ref=data, params=params)["report"].metadata["data"][
        "training"
    ]
    return {
        "tokens": training["tokens"],
        "seconds": training["seconds"],
        "peak_memory_bytes": training["peak_memory_bytes"],
    }


def run_reference(args) -> dict:
    """The seed's recipe as a plain script (SFTTrainer is not installed; the Trainer is what it wraps)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from pipelines.ml.datasets import read_jsonl
    from pipelines.ml.metrics import MemoryTracker

    cuda = args.device.startswith("cuda")
    torch.set_num_threads(int(os.environ["LLMOPS_TORCH_THREADS"]))  # what the node uses, too
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if args.qlora:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": args.device}
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model,
        LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS, bias="none", task_type="CAUSAL_LM"
        ),
    )
    rows = read_jsonl(Path(args.data) / "train.jsonl")
    # The text the node trains on: the model's chat template for the user turn, the answer, EOS.
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        + r["output"]
        + tokenizer.eos_token
        for r in rows
    ]
    train_set = [tokenizer(t, truncation=True, max_length=args.seq, add_special_tokens=False) for t in texts]
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-ref-"),
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=2e-4,
        warmup_steps=0.03,
        max_grad_norm=0.3,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=cuda and args.compute == "bf16",
        use_cpu=not cuda,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_set,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    with MemoryTracker(args.device) as memory:
        output = trainer.train()
    return {
        "tokens": trainer.state.num_input_tokens_seen,
        "seconds": output.metrics["train_runtime"],
        "peak_memory_bytes": memory.peak_bytes,
    }


# --- driver ------------------------------------------------------------------------------------


def one(side: str, args, model: Path, data: Path) -> dict:
    argv = [
        sys.executable,
        __file__,
        "--one",
        side,
        "--model",
        str(model),
        "--data",
        str(data),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--device",
        args.device,
        "--compute",
        args.compute,
    ] + (["--qlora"] if args.qlora else [])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "platform")]),
        "LLMOPS_TORCH_THREADS": str(args.threads),
    }
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


def mfu(tokens_per_s: float, parameters: float, device_name: str) -> float | None:
    """Model FLOPs utilisation: 6 x parameters FLOPs per trained token (forward + backward)
    against the dense bf16 peak. LoRA skips weight gradients of the frozen base, but the
    convention (PaLM appendix B) counts the full 6N so numbers compare across methods."""
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)
    return None if peak is None else tokens_per_s * 6 * parameters / (peak * 1e12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="alternate runs per side; the best counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads, both sides (default: free cores)"
    )
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--qlora-7b", action="store_true", help="GPU: QLoRA NF4 on a Llama-7B-shaped model")
    parser.add_argument("--one", choices=["node", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_node(args) if args.one == "node" else run_reference(args)))
        return 0
    if args.qlora_7b:
        import torch

        if not torch.cuda.is_available():
            print("--qlora-7b needs a CUDA GPU; none here")
            return 0
        args.qlora, args.device, args.compute = True, "cuda", "bf16"
    if not args.threads:
        from pipelines.ml.metrics import cpu_thread_count

        args.threads = cpu_thread_count()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model = Path(os.environ.get("BENCH_7B_DIR", work / "llama-7b")) if args.qlora_7b else work / "model"
    (build_7b_model if args.qlora_7b else build_small_model)(model)
    data = dataset_folder(work / "data", make_rows(max(256, args.steps * args.batch)))
    results: dict[str, list[dict]] = {"reference": [], "node": []}
    for _ in range(args.rounds):
        for side in ("reference", "node"):
            results[side].append(one(side, args, model, data))
    best = {side: max(runs, key=lambda r: r["tokens_per_s"]) for side, runs in results.items()}
    ratio = best["node"]["tokens_per_s"] / best["reference"]["tokens_per_s"]
    label = "QLoRA NF4, Llama-7B shape" if args.qlora_7b else "LoRA, demo-model shape (1.6M)"
    print(
        f"train.lora throughput ({label}, batch {args.batch}, seq <= {args.seq}, {args.steps} steps, "
        f"{args.device}, {args.compute}, {args.threads} CPU threads)"
    )
    for side in ("reference", "node"):
        r = best[side]
        memory = r["peak_memory_bytes"] / 2**20
        print(
            f"  {side:9s}: {r['tokens_per_s']:10.1f} tokens/s  peak memory {memory:8.1f} MiB"
            f"  ({r['tokens']} tokens in {r['seconds']:.2f} s)"
        )
    if args.qlora_7b:
        import torch

        name = torch.cuda.get_device_name(0)
        for side in ("reference", "node"):
            value = mfu(best[side]["tokens_per_s"], 6.74e9, name)
            print(f"  MFU {side}: {'n/a' if value is None else f'{100 * value:.1f}%'} ({name})")
    print(f"ratio node/reference: {ratio:.2f} (goal >= {GOAL})")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
