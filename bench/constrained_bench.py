"""Constrained decoding: a batch with a quarter of its rows held to a JSON schema, against the same
batch unconstrained, in one run; prints JSON.

What runs: ``--streams`` requests (default 16, ``max_batch_size`` the same) submitted at once to
one engine, greedy. Every ``--every``-th row (default 4: rows 0, 4, 8, 12) asks for a customer
record and, in the constrained load, carries ``constraint=grammar.matcher`` for a realistic schema
(an object with a bounded name, an integer age, an array of enum tags and a nested address object
with a postcode pattern); the other rows write free text for exactly ``--tokens`` tokens
(``ignore_eos``). A constrained row ends when its JSON is complete, so it generates fewer tokens
than a free row; to compare like with like, the unconstrained load gives each of those rows the
same prompt, ``ignore_eos`` and ``max_tokens`` equal to the number of tokens its constrained
counterpart generated (measured in a calibration round, which doubles as the warm-up). Both loads
then generate the same tokens per row, with the same batch size at every step: the only difference
is the grammar (mask fill, mask apply, token accept). Loads run interleaved ``--repeat`` times
(order alternating); figures are medians.

Figures: tokens per second (completion tokens / wall time from the first submit to the last
``Finished``), decode tokens per second (rows decoded / time inside decode steps), mean decode-step
time at the full batch and overall, the grammar's own time per decode step (``fill_bitmask``,
``apply_bitmask``, ``accept``, timed by wrapping them in this script), and every constrained output
parsed as JSON and checked against the schema (``invalid`` must be 0). Target: constrained tokens/s
>= 0.8x unconstrained.

    .venv/bin/python bench/constrained_bench.py                  # ~2 min on 2 shared EPYC cores
    .venv/bin/python bench/constrained_bench.py --streams 16 --every 4 --tokens 96 --repeat 3
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import server.engine.grammar as grammar_module
import server.engine.rows as rows_module
from adapters.base_model import load_base
from adapters.embedded import prepare_embedded_model
from adapters.execution_plan import ALL_PLANS, ExecutionPlan
from adapters.machine import machine_info
from bench.constrained_workload import SCHEMA, prompt_texts, schema_errors
from bench.wall_timers import WallTimers
from server.engine.adapter_cache import AdapterHandle
from server.engine.grammar import GrammarCompiler, RowMatcher
from server.engine.requests import Event, Finished, GenerationRequest, TextDelta
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.conftest import make_lora

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.8


class Timers(WallTimers):
    """Wall time in engine internals for the load running now, and its decode steps."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[int, float]] = []
        """Decode steps: (rows, seconds)."""

    def reset(self) -> None:
        super().reset()
        self.steps.clear()


def instrument(engine: Engine, timers: Timers) -> None:
    """Time the decode steps and the grammar's parts, without touching the engine's code."""
    decode_step = engine._decode_step

    def timed_decode_step() -> None:
        rows = len(engine._rows)
        started = time.perf_counter()
        decode_step()
        timers.steps.append((rows, time.perf_counter() - started))

    engine._decode_step = timed_decode_step  # type: ignore[method-assign]
    engine._prefill_step = timers.wrap("prefill_step", engine._prefill_step)  # type: ignore[method-assign]
    rows_module.process_rows = timers.wrap("process_rows", rows_module.process_rows)
    grammar_module.apply_bitmask = timers.wrap("apply_bitmask", grammar_module.apply_bitmask)
    RowMatcher.fill_bitmask = timers.wrap("fill_bitmask", RowMatcher.fill_bitmask)  # type: ignore[method-assign]
    RowMatcher.accept = timers.wrap("accept", RowMatcher.accept)  # type: ignore[method-assign]


def run_load(
    engine: Engine,
    timers: Timers,
    ids: list[list[int]],
    adapters: list[AdapterHandle | None],
    params: list[SamplingParams],
    constraints: list[Callable[[], Any] | None],
) -> dict[str, Any]:
    """Submit every row at once; figures once the last one finishes."""
    texts: list[list[str]] = [[] for _ in ids]
    finished: list[Finished | None] = [None] * len(ids)
    done = threading.Semaphore(0)

    def emitter(i: int) -> Callable[[Event], None]:
        def emit(event: Event) -> None:
            if isinstance(event, TextDelta):
                texts[i].append(event.text)
            elif isinstance(event, Finished):
                finished[i] = event
                done.release()

        return emit

    timers.reset()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, prompt in enumerate(ids):
        engine.submit(GenerationRequest(prompt, params[i], adapters[i], emitter(i), constraint=constraints[i]))
    for _ in ids:
        done.acquire()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    ends = [f for f in finished if f is not None]
    errors = [f.error for f in ends if f.reason == "error"]
    if errors or len(ends) != len(ids):
        raise SystemExit(f"requests failed: {errors[:3]}")
    generated = sum(f.completion_tokens for f in ends)
    full = max(rows for rows, _ in timers.steps)
    full_steps = [s for rows, s in timers.steps if rows == full]
    decode_s = sum(s for _, s in timers.steps)
    steps = len(timers.steps)
    return {
        "tok_s": generated / wall,
        "tok_per_cpu_s": generated / cpu,
        "decode_tok_s": sum(rows for rows, _ in timers.steps) / decode_s,
        "generated": generated,
        "completion_tokens": [f.completion_tokens for f in ends],
        "reasons": [f.reason for f in ends],
        "texts": ["".join(t) for t in texts],
        "wall_s": wall,
        "decode_steps": steps,
        "full_batch_rows": full,
        "full_batch_steps": len(full_steps),
        "step_ms_full_batch": 1000 * statistics.mean(full_steps),
        "step_ms_mean": 1000 * decode_s / steps,
        "prefill_ms": 1000 * timers.seconds["prefill_step"],
        "grammar_ms_per_decode_step": {
            name: 1000 * timers.seconds[name] / steps for name in ("fill_bitmask", "apply_bitmask", "accept")
        },
        "process_rows_ms_per_decode_step": 1000 * timers.seconds["process_rows"] / steps,
    }


def validate(load: dict[str, Any], json_rows: list[int]) -> dict[str, Any]:
    """Every constrained output parsed and checked against :data:`SCHEMA`."""
    invalid, truncated, problems = 0, 0, []
    for i in json_rows:
        if load["reasons"][i] == "length":
            truncated += 1
        try:
            errors = schema_errors(json.loads(load["texts"][i]), SCHEMA)
        except json.JSONDecodeError as exc:
            errors = [f"not JSON: {exc}"]
        if errors:
            invalid += 1
            problems.append({"row": i, "errors": errors[:3], "text": load["texts"][i][:300]})
    return {"checked": len(json_rows), "invalid": invalid, "truncated": truncated, "problems": problems[:4]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16, help="concurrent requests (= max_batch_size)")
    parser.add_argument("--every", type=int, default=4, help="every n-th row is constrained (4: a quarter)")
    parser.add_argument("--tokens", type=int, default=96, help="tokens of every free row (ignore_eos)")
    parser.add_argument("--json-max-tokens", type=int, default=256, help="cap of the constrained rows")
    parser.add_argument("--adapters", type=int, default=0, help="spread rows over this many adapters (0: base)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both loads (interleaved); medians")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--plan", choices=ALL_PLANS, default=None, help="execution plan (default: auto)")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the embedded SmolLM2-135M")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model_dir or prepare_embedded_model(ROOT / "data" / "models")
    plan = ExecutionPlan.from_name(args.plan) if args.plan else None
    base = load_base(model_dir, plan=plan, plan_cache=ROOT / "data", threads=args.threads or None)
    tokenizer = base.tokenizer
    compile_started = time.perf_counter()
    grammar = GrammarCompiler(tokenizer, base.eos_token_ids).json_schema(SCHEMA)
    compile_s = time.perf_counter() - compile_started

    rows = prompt_texts(args.streams, args.every)
    json_rows = [i for i, (_, wants_json) in enumerate(rows) if wants_json]
    ids = [
        tokenizer(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        ).input_ids
        for text, _ in rows
    ]
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_lora(model_dir, Path(tmp) / f"a{i}", args.rank, seed=i) for i in range(args.adapters)]
        handles = [AdapterHandle(f"bench/a{i}@1", p) for i, p in enumerate(paths)]
        adapters: list[AdapterHandle | None] = [handles[i % len(handles)] if handles else None for i in range(len(ids))]
        engine = Engine(base, max_batch_size=args.streams, threads=args.threads or None)
        timers = Timers()
        instrument(engine, timers)
        engine.start()

        free = SamplingParams(args.tokens, temperature=0, ignore_eos=True)
        constrained_params = [
            SamplingParams(args.json_max_tokens, temperature=0) if i in json_rows else free for i in range(len(ids))
        ]
        constraints = [grammar.matcher if i in json_rows else None for i in range(len(ids))]

        def constrained_load() -> dict[str, Any]:
            return run_load(engine, timers, ids, adapters, constrained_params, constraints)

        calibration = constrained_load()  # warm-up, and the constrained rows' lengths
        lengths = calibration["completion_tokens"]
        matched = [
            SamplingParams(max(1, lengths[i]), temperature=0, ignore_eos=True) if i in json_rows else free
            for i in range(len(ids))
        ]

        def unconstrained_load() -> dict[str, Any]:
            return run_load(engine, timers, ids, adapters, matched, [None] * len(ids))

        rounds: dict[str, list[dict[str, Any]]] = {"constrained": [], "unconstrained": []}
        for r in range(args.repeat):
            order = [("constrained", constrained_load), ("unconstrained", unconstrained_load)]
            for name, load in order if r % 2 == 0 else order[::-1]:
                rounds[name].append(load())
        engine.stop()

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in rounds[name])

    figures = {
        name: {
            key: median(name, key)
            for key in (
                "tok_s",
                "tok_per_cpu_s",
                "decode_tok_s",
                "step_ms_full_batch",
                "step_ms_mean",
                "prefill_ms",
                "process_rows_ms_per_decode_step",
                "wall_s",
            )
        }
        | {
            "generated": rounds[name][0]["generated"],
            "decode_steps": rounds[name][0]["decode_steps"],
            "full_batch_rows": rounds[name][0]["full_batch_rows"],
            "full_batch_steps": rounds[name][0]["full_batch_steps"],
            "tok_s_runs": [run["tok_s"] for run in rounds[name]],
        }
        for name in rounds
    }
    figures["constrained"]["grammar_ms_per_decode_step"] = {
        part: statistics.median(run["grammar_ms_per_decode_step"][part] for run in rounds["constrained"])
        for part in ("fill_bitmask", "apply_bitmask", "accept")
    }
    ratios = [c["tok_s"] / u["tok_s"] for c, u in zip(rounds["constrained"], rounds["unconstrained"])]
    checks = [validate(run, json_rows) for run in [calibration, *rounds["constrained"]]]
    stable = all(run["completion_tokens"] == lengths for run in rounds["constrained"])
    ratio = statistics.median(ratios)
    result = {
        "bench": "constrained_bench",
        "model": model_dir.name if args.model_dir else "SmolLM2-135M-Instruct NF4",
        "cpu": machine_info(),
        "plan": base.plan.name,
        "threads": torch.get_num_threads(),
        "baseline": "the same batch without grammars, constrained rows' lengths matched (same run, interleaved)",
        "method": (
            f"{args.streams} requests at once, greedy; rows {json_rows} carry the JSON-schema grammar in the "
            f"constrained load; free rows generate exactly {args.tokens} tokens (ignore_eos) in both loads; in the "
            "unconstrained load each would-be constrained row gets the same prompt, ignore_eos and max_tokens = the "
            "tokens its constrained counterpart generated, so both loads generate the same tokens per row with the "
            "same batch size at every step and differ only by the grammar; tok_s = completion tokens / wall "
            "(first submit to last Finished); decode_tok_s = rows decoded / time in decode steps; "
            f"{args.repeat} interleaved rounds, order alternating, medians"
        ),
        "streams": args.streams,
        "constrained_rows": len(json_rows),
        "tokens": args.tokens,
        "adapters": args.adapters,
        "repeat": args.repeat,
        "schema": SCHEMA,
        "grammar_compile_s": compile_s,
        "json_tokens": [lengths[i] for i in json_rows],
        "json_lengths_stable": stable,
        **figures,
        "tok_s_ratio": ratio,
        "tok_s_ratio_runs": ratios,
        "decode_tok_s_ratio": figures["constrained"]["decode_tok_s"] / figures["unconstrained"]["decode_tok_s"],
        "step_time_ratio_full_batch": figures["constrained"]["step_ms_full_batch"]
        / figures["unconstrained"]["step_ms_full_batch"],
        "validation": {
            "outputs_checked": sum(c["checked"] for c in checks),
            "invalid": sum(c["invalid"] for c in checks),
            "truncated": sum(c["truncated"] for c in checks),
            "problems": [p for c in checks for p in c["problems"]][:4],
        },
        "sample_output": calibration["texts"][json_rows[0]][:400] if json_rows else None,
        "target": f"constrained tok_s >= {TARGET_RATIO}x unconstrained",
        "meets_target": ratio >= TARGET_RATIO,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(rounded(result)))


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 4 places (JSON for people)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()
