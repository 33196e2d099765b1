"""In-process engine throughput on the embedded model, against naive PEFT serving, in one run.

Prints one JSON object. Loads: ``base`` alone; every stream on one adapter; streams spread over
``--adapters`` adapters (the batched LoRA path); and the naive baseline, PEFT ``set_adapter`` +
``generate`` one request at a time over the same adapters and prompts. Every request decodes
greedily for exactly ``--tokens`` tokens (``ignore_eos``; the naive baseline uses
``min_new_tokens``), so every load does the same work. Loads run interleaved ``--repeat`` times;
figures are medians, with the per-round values and tokens per CPU-second (steadier than wall time
on a shared machine) alongside.

    .venv/bin/python bench/engine_bench.py --streams 16 --adapters 8 --tokens 64

The HTTP-level benchmark with TTFT/ITL percentiles (bench/serve_bench.py) is a later issue's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import load_base
from adapters.embedded import prepare_embedded_model
from adapters.machine import machine_info
from server.engine.adapter_cache import AdapterHandle
from server.engine.requests import Finished, GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.conftest import make_lora


def prompts(tokenizer, n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write a long story about dragon number {i}."}],
            add_generation_prompt=True,
            tokenize=False,
        )
        out.append(tokenizer(text, add_special_tokens=False).input_ids)
    return out


def engine_load(engine: Engine, ids: list[list[int]], adapters: list[AdapterHandle | None], tokens: int) -> float:
    """Submit everything at once; tokens per second until the last request finishes."""
    done, generated, lock = threading.Semaphore(0), [0], threading.Lock()

    def emit(event) -> None:
        if isinstance(event, Finished):
            with lock:
                generated[0] += event.completion_tokens
            done.release()

    started, cpu_started = time.perf_counter(), time.process_time()
    for prompt, adapter in zip(ids, adapters):
        engine.submit(GenerationRequest(prompt, SamplingParams(tokens, temperature=0, ignore_eos=True), adapter, emit))
    for _ in ids:
        done.acquire()
    CPU_TOK_S.append(generated[0] / (time.process_time() - cpu_started))
    return generated[0] / (time.perf_counter() - started)


CPU_TOK_S: list[float] = []
"""Tokens per CPU-second of this process, per load: steadier than wall time on a shared machine."""


def naive_peft(model_dir: Path, paths: list[Path], ids: list[list[int]], tokens: int) -> float:
    """PEFT set_adapter + generate, one request at a time (the baseline to beat)."""
    from peft import PeftModel

    base = load_base(model_dir, plan_cache=Path("data"))
    model = PeftModel.from_pretrained(base.model, str(paths[0]), adapter_name="a0")
    for i, path in enumerate(paths[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"a{i}")
    model.eval()
    generated, started = 0, time.perf_counter()
    for n, prompt in enumerate(ids):
        model.set_adapter(f"a{n % len(paths)}")
        inputs = torch.tensor([prompt])
        out = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
        )
        generated += out.shape[1] - inputs.shape[1]
    return generated / (time.perf_counter() - started)


def round_ratios(runs: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    """One load over another, round by round (the two ran back to back in each round)."""
    return [n / d for n, d in zip(runs[numerator], runs[denominator])]


def load_parser(description: str, *, repeat: int, naive_requests: int) -> argparse.ArgumentParser:
    """The load options every engine/serving bench shares (same names, same defaults)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument(
        "--naive-requests", type=int, default=naive_requests, help="requests for the (slow) naive baseline; 0 skips it"
    )
    parser.add_argument("--repeat", type=int, default=repeat, help="rounds of every load (interleaved); medians")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the engine and the naive baseline (0: torch's default, one per core)",
    )
    return parser


def main() -> None:
    parser = load_parser(__doc__.splitlines()[0], repeat=3, naive_requests=8)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_dir = prepare_embedded_model(Path("data/models"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_lora(model_dir, Path(tmp) / f"a{i}", args.rank, seed=i) for i in range(args.adapters)]
        handles = [AdapterHandle(f"bench/a{i}@1", p) for i, p in enumerate(paths)]
        engine = Engine(
            load_base(model_dir, plan_cache=Path("data"), threads=args.threads or None),
            max_batch_size=args.streams,
            threads=args.threads or None,
        )
        engine.start()
        ids = prompts(engine.base.tokenizer, args.streams)
        engine_load(engine, ids[:2], handles[:2], 4)  # warm-up and first adapter loads
        loads = {
            "base_1_stream_tok_s": (ids[:1], [None]),
            "lora_1_stream_tok_s": (ids[:1], handles[:1]),
            "base_tok_s": (ids, [None] * len(ids)),
            "one_adapter_tok_s": (ids, [handles[0]] * len(ids)),
            "mixed_adapters_tok_s": (ids, [handles[i % len(handles)] for i in range(len(ids))]),
        }
        runs: dict[str, list[float]] = {name: [] for name in loads}
        cpu_runs: dict[str, list[float]] = {name: [] for name in loads}
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every load alike
            for name, (load_ids, load_adapters) in loads.items():
                runs[name].append(engine_load(engine, load_ids, load_adapters, args.tokens))
                cpu_runs[name].append(CPU_TOK_S[-1])
        engine.stop()
        result = {
            "model": "SmolLM2-135M-Instruct NF4",
            "device": str(engine.base.device),
            "threads": torch.get_num_threads(),
            "cpu": machine_info(),
            "plan": engine.base.plan.name,
            "streams": args.streams,
            "adapters": args.adapters,
            "rank": args.rank,
            "tokens": args.tokens,
            "repeat": args.repeat,
            **{name: statistics.median(values) for name, values in runs.items()},
            "runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
            "per_cpu_second": {name: round(statistics.median(values), 1) for name, values in cpu_runs.items()},
        }
        if args.naive_requests:
            result["naive_peft_tok_s"] = naive_peft(model_dir, paths, ids[: args.naive_requests], args.tokens)
            result["mixed_vs_naive"] = result["mixed_adapters_tok_s"] / result["naive_peft_tok_s"]
    # Ratios per round (both loads ran back to back), then their median and range.
    mixed_vs_one = round_ratios(runs, "mixed_adapters_tok_s", "one_adapter_tok_s")
    overhead = [1 - r for r in round_ratios(runs, "lora_1_stream_tok_s", "base_1_stream_tok_s")]
    result["mixed_vs_one_adapter"] = statistics.median(mixed_vs_one)
    result["mixed_vs_one_adapter_range"] = [round(min(mixed_vs_one), 3), round(max(mixed_vs_one), 3)]
    result["lora_overhead_1_stream"] = statistics.median(overhead)
    result["lora_overhead_1_stream_range"] = [round(min(overhead), 3), round(max(overhead), 3)]
    result["load_average"] = os.getloadavg()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
