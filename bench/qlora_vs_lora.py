"""QLoRA against 16-bit LoRA: held-out loss after training on the same data and seed, one run.

Prints one JSON object. The trainer trains twice with the same hyperparameters, samples
(``bench/train_data.py``: the example documents through the trainer's pipeline), LoRA
initialisation seed and data order: once on the NF4 base (QLoRA, what swaplora ships) and once on
the bf16 base (``prepare_model(..., quantize=False)``). Each side's held-out loss is measured
before and after training with ``trainer.evaluate.eval_loss``; the QLoRA promise is that the
quantized base costs almost nothing: ``relative_difference`` = (QLoRA - LoRA) / LoRA, target at
most +2 % (QLoRA lower than LoRA also meets it).

    .venv/bin/python bench/qlora_vs_lora.py                  # 128 samples, the trainer's epochs
    .venv/bin/python bench/qlora_vs_lora.py --seeds 0 1 2    # three replicates; their means judged
    .venv/bin/python bench/qlora_vs_lora.py --quick          # < 1 min on the tiny model (tests)

With ``--seeds``, each seed draws its own sample subset, held-out split, LoRA initialisation and
data order, and the means of the two held-out losses are compared: one small held-out set moves
by several percent between seeds, more than the 2 % the comparison is about.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import pick_device
from adapters.hyperparameters import Hyperparameters
from adapters.machine import machine_info
from bench import train_data
from trainer.evaluate import eval_loss
from trainer.packing import pack
from trainer.qlora import prepare_model, train

TARGET = 0.02


def train_and_eval(
    model_dir: Path, data: train_data.BenchData, hp: Hyperparameters, *, quantize: bool, seed: int, device: str | None
) -> dict:
    torch.manual_seed(seed)  # the same LoRA initialisation on both sides
    prepared = prepare_model(model_dir, hp, device=device, quantize=quantize, plan_cache=train_data.ROOT / "data")
    row_tokens = hp.row_tokens(prepared.device.type)
    batches = pack(data.train, row_tokens, seed)
    heldout = pack(data.heldout, row_tokens, seed)
    before = eval_loss(prepared, heldout)
    started = time.perf_counter()
    result = train(prepared, batches, hp, seed=seed)
    seconds = time.perf_counter() - started
    after = eval_loss(prepared, heldout)
    plan = prepared.plan.name
    del prepared
    gc.collect()
    return {
        "plan": plan,
        "eval_loss_before": before,
        "eval_loss": after,
        "steps": result.steps,
        "final_train_loss": result.final_loss,
        "train_seconds": seconds,
    }


def compare(model_dir: Path, args: argparse.Namespace, seed: int) -> dict:
    """Both sides on one seed's data subset, held-out split, LoRA initialisation and order."""
    hp = train_data.bench_hyperparameters(args)
    data = train_data.bench_samples(
        model_dir, seed=seed, max_seq_tokens=hp.row_tokens(pick_device(args.device).type), train_limit=args.samples
    )
    sides = {
        name: train_and_eval(model_dir, data, hp, quantize=quantize, seed=seed, device=args.device)
        for name, quantize in (("qlora", True), ("lora", False))
    }
    qlora, lora = sides["qlora"]["eval_loss"], sides["lora"]["eval_loss"]
    return {
        "seed": seed,
        "train_samples": len(data.train),
        "heldout_samples": len(data.heldout),
        "documents": data.documents,
        "hyperparameters": hp.to_dict(),
        "qlora_eval_loss": qlora,
        "lora_eval_loss": lora,
        "relative_difference": (qlora - lora) / lora,
        **sides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0, help="0 (default): the trainer's auto rule")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per optimizer step (default: auto)")
    parser.add_argument("--samples", type=int, default=128, help="train on a seeded subset of this many samples")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="one comparison per seed (its own subset, split and initialisation); the mean is judged",
    )
    parser.add_argument("--quick", action="store_true", help="8 samples, 1 epoch (a smoke run)")
    train_data.common_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.epochs = 8, 1
    args.epochs = args.epochs or None
    model_dir = args.model_dir or train_data.default_model_dir()
    runs = [compare(model_dir, args, seed) for seed in (args.seeds or [args.seed])]
    qlora = statistics.mean(r["qlora_eval_loss"] for r in runs)
    lora = statistics.mean(r["lora_eval_loss"] for r in runs)
    difference = (qlora - lora) / lora
    first = runs[0]
    result = {
        "model": model_dir.name,
        "device": str(pick_device(args.device)),
        "threads": torch.get_num_threads(),
        "cpu": machine_info(),
        "plan": first["qlora"].get("plan") if "qlora" in first else None,
        "load_average_1m": os.getloadavg()[0],
        "documents": first["documents"],
        "train_samples": first["train_samples"],
        "heldout_samples": first["heldout_samples"],
        "hyperparameters": first["hyperparameters"],
        "seeds": [r["seed"] for r in runs],
        "qlora_eval_loss": qlora,
        "lora_eval_loss": lora,
        "relative_difference": difference,
        "within_target": difference <= TARGET,
        **({"qlora": first["qlora"], "lora": first["lora"]} if len(runs) == 1 else {"runs": runs}),
    }
    print(json.dumps(train_data.rounded(result), indent=2))


if __name__ == "__main__":
    main()
