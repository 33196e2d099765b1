"""Training throughput and memory: swaplora's QLoRA trainer against HF ``Trainer`` + PEFT, one run.

Prints one JSON object. Both sides train the same NF4 base (loaded through
``adapters.base_model``) on the same encoded samples (``bench/train_data.py``: the example
documents through the trainer's own pipeline) with the same LoRA config, learning rate, schedule,
epochs, samples per optimizer step, gradient checkpointing setting and seed:

- ``ours``: ``trainer.packing.pack`` (rows of ``max_seq_tokens``, no padding, a prompt that
  samples share held once per row; ``--no-share-prefix`` turns that off) and
  ``trainer.qlora.train``;
- ``hf``: the standard QLoRA recipe (``prepare_model_for_kbit_training`` + ``get_peft_model``)
  under ``transformers.Trainer`` with padded batches of ``--batch-size`` samples
  (``DataCollatorForSeq2Seq``).

tokens/s counts the samples' tokens (no padding; a shared prompt counted in every sample, as in
the sample alone) over the training loop only (model loading excluded): both sides train on the
same total, whatever each computes for it (padding on the HF side; ``computed_tokens_per_epoch``
shows ours). tokens per CPU-second (user + system time of all threads) is
printed too: on a shared machine it moves less than wall-clock speed. Each side runs in its own fresh
subprocess, so its peak RSS
(``ru_maxrss`` at the end, model load included) is its own; ``--repeats`` alternates the order
(ours first, then hf first, ...) and the medians are reported, every run listed under ``runs``.
Both sides run with ``--threads`` torch threads (on a busy shared machine, 1 thread is both
faster and steadier than 2 contended ones). ``--max-seq-tokens`` sets the trainer's packing
budget (the HF side pads per batch and has none).

    .venv/bin/python bench/train_bench.py --threads 1 --samples 48
    .venv/bin/python bench/train_bench.py --quick   # < 1 min on the tiny model (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import load_base, load_nf4_model, pick_device
from adapters.execution_plan import ExecutionPlan
from adapters.hyperparameters import Hyperparameters, Resolved
from adapters.plan_choice import choose_plan
from bench import train_data
from trainer.packing import pack
from trainer.qlora import plan_rows
from trainer.tokenize import IGNORE_INDEX

SIDES = ("ours", "hf")
TARGET_RATIO = 1.5


class Clock:
    """Wall and CPU (user + system, all threads) seconds since the last :meth:`lap`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), self._cpu()
        lap = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return lap


def resolved_for(
    hp: Hyperparameters, data: train_data.BenchData, model_dir: Path, device: torch.device, seed: int
) -> Resolved:
    """The plan ours makes for these samples (the HF side takes its epochs and learning rate)."""
    config = json.loads((model_dir / "config.json").read_text())
    rows = pack(data.train, hp.row_tokens(device.type), seed)
    return plan_rows(rows, hp, hidden_size=config["hidden_size"], device_type=device.type)


def run_ours(
    model_dir: Path,
    data: train_data.BenchData,
    hp: Hyperparameters,
    seed: int,
    device: torch.device,
    share_prefix: bool = True,
) -> dict:
    from trainer.qlora import prepare_model, train

    clock = Clock()
    prepared = prepare_model(model_dir, hp, device=str(device), plan_cache=train_data.ROOT / "data")
    batches = pack(data.train, hp.row_tokens(device.type), seed, share_prefix=share_prefix)
    load_seconds, _ = clock.lap()
    result = train(prepared, batches, hp, seed=seed)
    seconds, cpu_seconds = clock.lap()
    return {
        "plan": prepared.plan.name,
        "load_seconds": load_seconds,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "steps": result.steps,
        "rows_per_epoch": len(batches),
        "tokens_per_epoch": sum(b.sample_tokens for b in batches),
        "computed_tokens_per_epoch": sum(b.tokens for b in batches),  # a shared prompt once per row
        "padding_fraction": 0.0,
        "final_loss": result.final_loss,
    }


class CountingCollator:
    """``DataCollatorForSeq2Seq`` that also counts the real and the padded tokens it emits."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorForSeq2Seq

        self.inner = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
        self.real = self.total = 0

    def __call__(self, features: list[dict]) -> dict:
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.total += int(batch["attention_mask"].numel())
        return batch


def run_hf(model_dir: Path, data: train_data.BenchData, hp: Hyperparameters, seed: int, device: torch.device) -> dict:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, TrainingArguments

    resolved = resolved_for(hp, data, model_dir, device, seed)
    clock = Clock()
    # The standard recipe keeps bitsandbytes' packed layers; it computes in the dtype our side
    # measured fastest here (an AVX2-only CPU has no fast bf16), so the loop is what differs.
    ours = choose_plan(load_nf4_model(model_dir, device), device, cache_dir=train_data.ROOT / "data")
    base = load_base(model_dir, str(device), plan=ExecutionPlan(ours.compute_dtype, "nf4", "the standard recipe"))
    model = prepare_model_for_kbit_training(base.model, use_gradient_checkpointing=resolved.gradient_checkpointing)
    targets = hp.target_modules if isinstance(hp.target_modules, str) else list(hp.target_modules)
    lora = LoraConfig(
        r=hp.lora_rank,
        lora_alpha=resolved.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    rows = [{"input_ids": s.input_ids, "labels": s.labels, "attention_mask": [1] * len(s)} for s in data.train]
    collator = CountingCollator(base.tokenizer)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=hp.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=resolved.learning_rate,
            num_train_epochs=resolved.n_epochs,
            lr_scheduler_type="cosine",
            warmup_steps=hp.warmup_ratio,
            optim="paged_adamw_32bit",
            weight_decay=0.0,
            gradient_checkpointing=resolved.gradient_checkpointing,
            seed=seed,
            data_seed=seed,
            use_cpu=device.type == "cpu",
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
        load_seconds, _ = clock.lap()
        output = trainer.train()
        seconds, cpu_seconds = clock.lap()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "load_seconds": load_seconds,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "steps": output.global_step,
        "tokens_per_epoch": collator.real // resolved.n_epochs,
        "padding_fraction": 1 - collator.real / collator.total,
        "final_loss": losses[-1] if losses else None,
    }


def child(args: argparse.Namespace) -> None:
    """One side, in this (fresh) process; prints its JSON line."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    model_dir = Path(args.model_dir)
    device = pick_device(args.device)
    hp = train_data.bench_hyperparameters(args)
    data = train_data.bench_samples(
        model_dir, seed=args.seed, max_seq_tokens=hp.row_tokens(device.type), train_limit=args.samples
    )
    if args.side == "ours":
        run = run_ours(model_dir, data, hp, args.seed, device, share_prefix=not args.no_share_prefix)
    else:
        run = run_hf(model_dir, data, hp, args.seed, device)
    tokens = data.train_tokens * hp.n_epochs
    run.update(
        side=args.side,
        tokens=tokens,
        tokens_per_s=tokens / run["train_seconds"],
        tokens_per_cpu_s=tokens / run["train_cpu_seconds"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        train_samples=len(data.train),
        documents=data.documents,
        max_seq_tokens=hp.row_tokens(device.type),
    )
    print(json.dumps(run))


def spawn(side: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--model-dir",
        str(args.model_dir),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
    ]
    command += ["--samples", str(args.samples)] if args.samples is not None else []
    command += ["--max-seq-tokens", str(args.max_seq_tokens)] if args.max_seq_tokens else []
    command += ["--device", args.device] if args.device else []
    command += ["--no-share-prefix"] if args.no_share_prefix else []
    # The same thread count on both sides (the trainer would otherwise pick fewer threads on a
    # busy machine, which is faster there, but not what this compares).
    return train_data.spawn_side(command, side, args.threads)


def compare(args: argparse.Namespace) -> dict:
    runs = train_data.alternating_runs(SIDES, args.repeats, lambda side: spawn(side, args))
    per = {s: [r for r in runs if r["side"] == s] for s in SIDES}
    if (
        per["ours"][0]["tokens"] != per["hf"][0]["tokens"]
        or per["ours"][0]["tokens_per_epoch"] != per["hf"][0]["tokens_per_epoch"]
    ):
        raise SystemExit(f"the sides trained on different token counts: {runs}")
    speed = {s: statistics.median(r["tokens_per_s"] for r in per[s]) for s in SIDES}
    cpu_speed = {s: statistics.median(r["tokens_per_cpu_s"] for r in per[s]) for s in SIDES}
    rss = {s: max(r["peak_rss_mb"] for r in per[s]) for s in SIDES}
    first = per["ours"][0]
    return {
        "model": Path(args.model_dir).name,
        "device": str(pick_device(args.device)),
        "threads": args.threads,
        "load_average_1m": os.getloadavg()[0],
        "documents": first["documents"],
        "train_samples": first["train_samples"],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_seq_tokens": first["max_seq_tokens"],
        "tokens": first["tokens"],
        "share_prefix": not args.no_share_prefix,
        "ours_computed_tokens_per_epoch": first["computed_tokens_per_epoch"],
        "ours_tokens_per_s": speed["ours"],
        "hf_tokens_per_s": speed["hf"],
        "tokens_per_s_ratio": speed["ours"] / speed["hf"],
        "ours_tokens_per_cpu_s": cpu_speed["ours"],
        "hf_tokens_per_cpu_s": cpu_speed["hf"],
        "tokens_per_cpu_s_ratio": cpu_speed["ours"] / cpu_speed["hf"],
        "ours_peak_rss_mb": rss["ours"],
        "hf_peak_rss_mb": rss["hf"],
        "peak_rss_ratio": rss["ours"] / rss["hf"],
        "hf_padding_fraction": per["hf"][0]["padding_fraction"],
        "meets_targets": speed["ours"] / speed["hf"] >= TARGET_RATIO and rss["ours"] <= rss["hf"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=64, help="train on a seeded subset of this many samples")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per optimizer step (both sides)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating which goes first")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads, both sides")
    train_data.common_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="8 samples, 1 epoch, 1 repeat (a smoke run)")
    parser.add_argument(
        "--no-share-prefix", action="store_true", help="ours packs without shared prompts (to see what sharing adds)"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.epochs, args.repeats, args.batch_size = 8, 1, 1, 4
    train_data.run_bench(args, child, compare)


if __name__ == "__main__":
    main()
