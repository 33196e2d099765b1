"""The prefix-cache and constrained-decoding benchmarks run end to end on the tiny model (a few
tokens, short prompts) and print the JSON they promise. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, model_dir: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--model-dir", str(model_dir), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_prefix_bench_reports_every_turn_with_the_cache_off_and_on(tiny_model_dir: Path) -> None:
    out = run_bench(
        "prefix_bench.py",
        tiny_model_dir,
        *("--tenants", "2", "--turns", "3", "--max-tokens", "4", "--system-tokens", "200"),
    )
    for key in ("cpu", "plan", "replies_identical", "hit_rate", "ttft_ratio_from_turn_2_max", "meets_target"):
        assert key in out, key
    assert out["cpu"]["capability"] and out["plan"]
    assert len(out["system_prompt_tokens"]) == 2 and all(0 < n <= 200 for n in out["system_prompt_tokens"])
    turns = out["per_turn"]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    first, later = turns[0], turns[1:]
    assert first["prefilled_on"] == first["prefilled_off"] == first["prompt_tokens"]  # nothing cached yet
    for turn in later:  # the history before this turn's reply and message is served from the cache
        assert turn["prefilled_off"] == turn["prompt_tokens"] > turn["prefilled_on"] > 0
        assert turn["ttft_off_s"] > 0 and turn["ttft_on_s"] > 0 and "meets_target" in turn
        assert turn["prompt_tokens"] > first["prompt_tokens"]  # the conversation grows
    assert 0 < out["hit_rate"] < 1
    assert isinstance(out["replies_identical"], bool)
    assert out["reply_mismatch_count"] == 0 or not out["replies_identical"]


def test_prefix_bench_concurrent_option(tiny_model_dir: Path) -> None:
    out = run_bench(
        "prefix_bench.py",
        tiny_model_dir,
        *("--tenants", "2", "--turns", "2", "--max-tokens", "3", "--system-tokens", "120", "--concurrent"),
    )
    assert out["concurrent"] and len(out["per_turn"]) == 2
    assert out["per_turn"][1]["prefilled_on"] < out["per_turn"][1]["prefilled_off"]


def test_constrained_bench_matches_lengths_and_validates_every_json_output(tiny_model_dir: Path) -> None:
    out = run_bench(
        "constrained_bench.py",
        tiny_model_dir,
        *("--streams", "4", "--every", "2", "--tokens", "6", "--json-max-tokens", "48", "--repeat", "1"),
    )
    for key in ("cpu", "plan", "method", "tok_s_ratio", "decode_tok_s_ratio", "step_time_ratio_full_batch"):
        assert key in out, key
    assert out["constrained_rows"] == 2 and len(out["json_tokens"]) == 2
    constrained, unconstrained = out["constrained"], out["unconstrained"]
    # Same tokens per row in both loads: the only difference is the grammar.
    assert constrained["generated"] == unconstrained["generated"] == 2 * 6 + sum(out["json_tokens"])
    assert constrained["tok_s"] > 0 and unconstrained["tok_s"] > 0 and constrained["step_ms_full_batch"] > 0
    assert set(constrained["grammar_ms_per_decode_step"]) == {"fill_bitmask", "apply_bitmask", "accept"}
    validation = out["validation"]
    assert validation["outputs_checked"] == 2 * 2  # the calibration round and one round
    # A random model may run out of tokens mid-JSON; every output the grammar completed is valid.
    assert validation["invalid"] == validation["truncated"]
