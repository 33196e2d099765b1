"""Every execution plan on this machine, through the real engine and the real trainer, in one run.

Prints one JSON object::

    {"cpu": {...}, "auto": "<plan>", "auto_reason": "...",
     "plans": {"<plan>": {"serve_1": tok/s, "serve_16": tok/s, "train": tokens/s}, ...},
     "best": {"serve_1": "<plan>", ...}, "auto_vs_best": {"serve_1": 0.97, ...}, "met": true}

- ``serve_1`` / ``serve_16``: the engine (:class:`server.engine.step_loop.Engine`) on the embedded model
  in that plan, 1 and 16 concurrent streams on one rank-16 all-linear adapter, greedy, exactly
  ``--tokens`` tokens each (``ignore_eos``): generated tokens per second.
- ``train``: :func:`trainer.qlora.train` on packed rows of the example documents (the bench
  samples of ``bench/train_data.py``), ``--train-steps`` optimizer steps: sample tokens per second.
- ``auto``: the plan :func:`adapters.plan_choice.choose_plan` picks here, measured afresh (no
  cache); ``met`` says whether it is within 10 % of the best plan on every workload.

Plans take turns, ``--repeat`` rounds, each figure the median of its rounds (a shared machine
drifts; interleaving spreads that over every plan). ``--plans`` limits the candidates, e.g. to
check what an AVX2-only CPU gets: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` makes torch
use its AVX2 kernels (bitsandbytes' fused AVX512-BF16 kernel is not affected by them).

    .venv/bin/python bench/cpu_paths.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import load_base, load_nf4_model
from adapters.execution_plan import ALL_PLANS, ExecutionPlan
from adapters.hyperparameters import parse
from adapters.machine import machine_info
from adapters.plan_choice import choose_plan
from bench import train_data
from bench.engine_bench import engine_load, prompts
from server.engine.adapter_cache import AdapterHandle
from server.engine.step_loop import Engine
from tests.conftest import make_lora
from trainer.objective import row_loss
from trainer.packing import pack
from trainer.qlora import Prepared, make_optimizer, prepare_model

WORKLOADS = ("serve_1", "serve_16", "train")
TARGET = 0.9


class TrainSide:
    """A prepared trainer for one plan; :meth:`steps` runs optimizer steps as ``train`` does."""

    def __init__(self, model_dir: Path, plan: ExecutionPlan, data: train_data.BenchData, rows_per_step: int) -> None:
        hp = parse({})
        self.prepared: Prepared = prepare_model(model_dir, hp, device="cpu", plan=plan)
        self.rows = pack(data.train, hp.row_tokens("cpu"), 0)
        self.rows_per_step = rows_per_step
        self.params = [p for p in self.prepared.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, 1e-4)
        self.prepared.model.train()
        self.next = 0

    def steps(self, count: int) -> float:
        """Sample tokens per second over ``count`` optimizer steps."""
        tokens, started = 0, time.perf_counter()
        for _ in range(count):
            group = [self.rows[(self.next + i) % len(self.rows)] for i in range(self.rows_per_step)]
            self.next += self.rows_per_step
            for row in group:
                (row_loss(self.prepared, row) / len(group)).backward()
                tokens += row.sample_tokens
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", nargs="+", default=list(ALL_PLANS), choices=ALL_PLANS)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=2, help="optimizer steps per round")
    parser.add_argument("--rows-per-step", type=int, default=4, help="packed rows of 256 tokens per step")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = train_data.default_model_dir()
    candidates = [ExecutionPlan.from_name(name) for name in args.plans]

    started = time.perf_counter()
    auto = choose_plan(
        load_nf4_model(model_dir, torch.device("cpu")), torch.device("cpu"), threads=args.threads or None
    )
    auto_seconds = time.perf_counter() - started

    data = train_data.bench_samples(model_dir, seed=0, max_seq_tokens=parse({}).row_tokens("cpu"))
    runs: dict[str, dict[str, list[float]]] = {p.name: {w: [] for w in WORKLOADS} for p in candidates}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = AdapterHandle("bench/a0@1", make_lora(model_dir, Path(tmp) / "a0", 16, seed=0))
        engines, trainers = {}, {}
        for plan in candidates:
            engine = Engine(load_base(model_dir, "cpu", plan=plan), max_batch_size=16, threads=args.threads or None)
            engine.start()
            ids = prompts(engine.base.tokenizer, 16)
            engine_load(engine, ids[:2], [adapter] * 2, 4)  # warm-up, adapter load
            engines[plan.name] = (engine, ids)
            trainers[plan.name] = TrainSide(model_dir, plan, data, args.rows_per_step)
            trainers[plan.name].steps(1)  # warm-up
        for _ in range(args.repeat):
            for name, (engine, ids) in engines.items():
                runs[name]["serve_1"].append(engine_load(engine, ids[:1], [adapter], args.tokens))
                runs[name]["serve_16"].append(engine_load(engine, ids, [adapter] * 16, args.tokens))
                runs[name]["train"].append(trainers[name].steps(args.train_steps))
        for engine, _ in engines.values():
            engine.stop()

    plans = {name: {w: round(statistics.median(v), 1) for w, v in works.items()} for name, works in runs.items()}
    best = {w: max(plans, key=lambda name: plans[name][w]) for w in WORKLOADS}
    result: dict = {
        "cpu": machine_info(),
        "threads": torch.get_num_threads(),
        "auto": auto.name,
        "auto_reason": auto.reason,
        "auto_choice_seconds": round(auto_seconds, 2),
        "plans": plans,
        "runs": {name: {w: [round(x, 1) for x in v] for w, v in works.items()} for name, works in runs.items()},
        "best": best,
        "load_average": os.getloadavg(),
    }
    if auto.name in plans:
        ratios = {w: round(plans[auto.name][w] / plans[best[w]][w], 3) for w in WORKLOADS}
        result["auto_vs_best"] = ratios
        result["met"] = all(r >= TARGET for r in ratios.values())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
