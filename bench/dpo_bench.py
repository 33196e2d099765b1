"""DPO against supervised training on the same preference pairs: speed per pair and per token, peak memory.

Prints one JSON object. Both sides load the NF4 base the same way (``trainer.qlora.prepare_model``)
and train one LoRA with the same hyperparameters (one packed row per optimizer step, so a step
is one forward and backward over one row) on the same pairs (``examples/preferences/sign-off.jsonl``
by default, a seeded subset with ``--pairs``):

- ``supervised``: each pair's preferred conversation as a chat sample, packed as every supervised
  job packs (``trainer.packing.pack``), the answers' cross-entropy;
- ``dpo``: the pairs' rows (``trainer.preference_rows.pair_rows``: both answers after one shared
  prompt), the reference pass first (timed apart: ``reference_seconds``), then DPO's loss.

Expect about twice the work for DPO (two answers per pair): ``seconds_per_pair_ratio`` is DPO's
training seconds per pair over supervised's, ``computed_tokens_ratio`` the tokens each computes
per epoch. ``tokens_per_s`` counts the samples' own tokens (a shared prompt counted in each
sample, as in the sample alone): the preferred samples for supervised, both samples for DPO.
Each side runs in its own fresh subprocess, so its peak RSS (``ru_maxrss`` at the end, model
load included) is its own; on CUDA ``peak_cuda_mb`` is ``torch.cuda.max_memory_allocated``.
``--repeats`` alternates the order and reports medians; every run is listed under ``runs``.

    .venv/bin/python bench/dpo_bench.py --threads 2
    .venv/bin/python bench/dpo_bench.py --quick --model-dir DIR   # a smoke run (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import pick_device
from adapters.chat_format import conversation
from adapters.hyperparameters import parse
from adapters.training_method import DEFAULT_BETA, DEFAULT_SFT_WEIGHT
from bench import train_data
from bench.train_bench import Clock

SIDES = ("supervised", "dpo")
PAIRS = train_data.EXAMPLES / "preferences" / "sign-off.jsonl"
SYSTEM = "You answer for Lumen Lane Bicycles."


def child(args: argparse.Namespace) -> None:
    """One side, in this (fresh) process; prints its JSON line."""
    from trainer.documents import load_pairs
    from trainer.dpo import objective, with_reference
    from trainer.objective import SUPERVISED
    from trainer.packing import pack
    from trainer.preference_rows import pair_rows
    from trainer.qlora import prepare_model, train
    from trainer.tokenize import encode

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    device = pick_device(args.device)
    hp = parse(
        {
            "n_epochs": args.epochs,
            "gradient_accumulation_steps": 1,
            "max_seconds": 7 * 24 * 3600.0,
            **({"max_seq_tokens": args.max_seq_tokens} if args.max_seq_tokens else {}),
        }
    )
    pairs = load_pairs(args.pairs_file, args.pairs_file.name)[: args.pairs]
    clock = Clock()
    prepared = prepare_model(args.model_dir, hp, device=str(device), plan_cache=train_data.ROOT / "data")
    budget = min(hp.row_tokens(device.type), prepared.context_length)
    if args.side == "dpo":
        rows = pair_rows(prepared.tokenizer, pairs, SYSTEM, budget, prepared.context_length, args.seed)
        load_seconds, _ = clock.lap()
        rows = with_reference(prepared, rows)
        reference_seconds, _ = clock.lap()
        goal = objective(DEFAULT_BETA, DEFAULT_SFT_WEIGHT)
    else:
        chosen = [[*conversation(p.messages, SYSTEM), {"role": "assistant", "content": p.preferred}] for p in pairs]
        rows = pack([encode(prepared.tokenizer, c) for c in chosen], budget, args.seed)
        load_seconds, _ = clock.lap()
        reference_seconds, goal = 0.0, SUPERVISED
    result = train(prepared, list(rows), hp, seed=args.seed, objective=goal)
    seconds, cpu_seconds = clock.lap()
    tokens = sum(r.sample_tokens for r in rows) * args.epochs
    cuda = device.type == "cuda"
    print(
        json.dumps(
            {
                "side": args.side,
                "plan": prepared.plan.name,
                "load_seconds": load_seconds,
                "reference_seconds": reference_seconds,
                "train_seconds": seconds,
                "train_cpu_seconds": cpu_seconds,
                "steps": result.steps,
                "rows_per_epoch": len(rows),
                "computed_tokens_per_epoch": sum(r.tokens for r in rows),
                "tokens": tokens,
                "tokens_per_s": tokens / seconds,
                "pairs_per_s": len(pairs) * args.epochs / seconds,
                "seconds_per_step": seconds / max(1, result.steps),
                "final_loss": result.final_loss,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                "pairs": len(pairs),
                "max_seq_tokens": budget,
            }
        )
    )


def spawn(side: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--side", side, "--model-dir", str(args.model_dir)]
    command += ["--pairs", str(args.pairs), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    command += ["--pairs-file", str(args.pairs_file)]
    command += ["--max-seq-tokens", str(args.max_seq_tokens)] if args.max_seq_tokens else []
    command += ["--device", args.device] if args.device else []
    return train_data.spawn_side(command, side, args.threads)


def compare(args: argparse.Namespace) -> dict:
    runs = train_data.alternating_runs(SIDES, args.repeats, lambda side: spawn(side, args))
    per = {s: [r for r in runs if r["side"] == s] for s in SIDES}

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in per[side])

    sft, dpo = per["supervised"][0], per["dpo"][0]
    return {
        "model": Path(args.model_dir).name,
        "device": str(pick_device(args.device)),
        "plan": sft["plan"],
        "threads": args.threads,
        "load_average_1m": os.getloadavg()[0],
        "pairs": sft["pairs"],
        "epochs": args.epochs,
        "max_seq_tokens": sft["max_seq_tokens"],
        "supervised_tokens_per_s": median("supervised", "tokens_per_s"),
        "dpo_tokens_per_s": median("dpo", "tokens_per_s"),
        "supervised_pairs_per_s": median("supervised", "pairs_per_s"),
        "dpo_pairs_per_s": median("dpo", "pairs_per_s"),
        "seconds_per_pair_ratio": median("supervised", "pairs_per_s") / median("dpo", "pairs_per_s"),
        "computed_tokens_ratio": dpo["computed_tokens_per_epoch"] / sft["computed_tokens_per_epoch"],
        "supervised_seconds_per_step": median("supervised", "seconds_per_step"),
        "dpo_seconds_per_step": median("dpo", "seconds_per_step"),
        "dpo_reference_seconds": median("dpo", "reference_seconds"),
        "supervised_peak_rss_mb": max(r["peak_rss_mb"] for r in per["supervised"]),
        "dpo_peak_rss_mb": max(r["peak_rss_mb"] for r in per["dpo"]),
        "supervised_peak_cuda_mb": sft["peak_cuda_mb"],
        "dpo_peak_cuda_mb": dpo["peak_cuda_mb"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="the first this many pairs of the file")
    parser.add_argument("--pairs-file", type=Path, default=PAIRS, help="OpenAI preference JSONL")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating which goes first")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads, both sides")
    train_data.common_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="6 pairs, 1 epoch, 1 repeat (a smoke run)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.epochs, args.repeats = 6, 1, 1
    train_data.run_bench(args, child, compare)


if __name__ == "__main__":
    main()
