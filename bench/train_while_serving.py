"""Training while the server decodes: the cores split (server.cpu_share) against both sides
taking every core, in one run.

Prints one JSON object. In each mode a training process (the real trainer: packed rows of the
example documents, ``--steps`` optimizer steps) runs next to the engine decoding ``--streams``
streams on one adapter, ``--tokens`` tokens each, over and over until training ends:

- ``split``: what the server does; the engine gets ``CPUShare.engine_threads(1)`` threads, the
  worker ``CPUShare.worker_threads(1)`` (one each on two cores);
- ``oversubscribed``: both take one thread per core (torch's default; what the server did before).

Reported per mode: the engine's tokens/s while training ran and the trainer's sample tokens/s;
``alone`` gives each side without the other (same thread counts as ``split``) for reference.

    .venv/bin/python bench/train_while_serving.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.base_model import load_base  # noqa: E402
from adapters.execution_plan import ExecutionPlan  # noqa: E402
from adapters.machine import machine_info, usable_cores  # noqa: E402
from bench import train_data  # noqa: E402
from bench.engine_bench import engine_load, prompts  # noqa: E402
from server.cpu_share import CPUShare  # noqa: E402
from server.engine.adapter_cache import AdapterHandle  # noqa: E402
from server.engine.step_loop import Engine  # noqa: E402
from server.jobs.child_process import trainer_env  # noqa: E402
from tests.conftest import make_lora  # noqa: E402


def train_child(args: argparse.Namespace) -> None:
    """The training side, in its own process (as a job's worker is): prints its tokens/s."""
    from adapters.hyperparameters import parse
    from bench.cpu_paths import TrainSide

    model_dir = train_data.default_model_dir()
    data = train_data.bench_samples(model_dir, seed=0, max_seq_tokens=parse({}).row_tokens("cpu"))
    side = TrainSide(model_dir, ExecutionPlan.from_name(args.plan), data, rows_per_step=4)
    print("ready", flush=True)
    print(json.dumps({"train_tok_s": side.steps(args.steps), "threads": torch.get_num_threads()}), flush=True)


def run_mode(engine: Engine | None, ids, adapter, args, train_threads: int | None) -> dict:
    """Serve in a loop while a training child runs (either side may be absent)."""
    result: dict = {}
    child = None
    if train_threads is not None:
        env = trainer_env(train_threads)
        child = subprocess.Popen(
            [sys.executable, __file__, "--side", "train", "--plan", args.plan, "--steps", str(args.steps)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # model loaded: training starts now
    rates, started = [], time.monotonic()
    while engine is not None and (
        child is None and time.monotonic() - started < args.serve_seconds or child is not None and child.poll() is None
    ):
        rates.append(engine_load(engine, ids, [adapter] * len(ids), args.tokens))
    if engine is not None:
        result["serve_tok_s"] = round(statistics.mean(rates), 1)
        result["serve_rounds"] = len(rates)
    if child is not None:
        out, _ = child.communicate(timeout=3600)
        result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of 4 packed rows")
    parser.add_argument("--serve-seconds", type=float, default=20.0, help="serving alone: how long")
    parser.add_argument("--plan", default=None, help="execution plan (default: the one measured here)")
    parser.add_argument("--side", choices=["train"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        train_child(args)
        return
    model_dir = train_data.default_model_dir()
    share = CPUShare.for_this_machine()
    base = load_base(
        model_dir, "cpu", plan=ExecutionPlan.from_name(args.plan) if args.plan else None, plan_cache=ROOT / "data"
    )
    args.plan = base.plan.name
    cores = usable_cores()
    modes = {
        "split": (share.engine_threads(1), share.worker_threads(1)),
        "oversubscribed": (cores, cores),
    }
    with tempfile.TemporaryDirectory() as tmp:
        adapter = AdapterHandle("bench/a0@1", make_lora(model_dir, Path(tmp) / "a0", 16, seed=0))
        engine = Engine(base, max_batch_size=args.streams, threads=modes["split"][0])
        engine.start()
        ids = prompts(base.tokenizer, args.streams)
        engine_load(engine, ids[:2], [adapter] * 2, 4)  # warm-up, adapter load
        result: dict = {"cpu": machine_info(), "plan": args.plan, "modes": {}, "alone": {}}
        result["alone"]["serve"] = run_mode(engine, ids, adapter, args, None)
        result["alone"]["train"] = run_mode(None, ids, adapter, args, modes["split"][1])
        for name, (engine_threads, worker_threads) in modes.items():
            engine.set_threads(engine_threads)
            result["modes"][name] = {
                "engine_threads": engine_threads,
                "worker_threads": worker_threads,
                **run_mode(engine, ids, adapter, args, worker_threads),
            }
        engine.stop()
    split, over = result["modes"]["split"], result["modes"]["oversubscribed"]
    result["split_vs_oversubscribed"] = {
        "serve": round(split["serve_tok_s"] / over["serve_tok_s"], 2),
        "train": round(split["train_tok_s"] / over["train_tok_s"], 2),
    }
    result["load_average"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
