"""The training benchmarks run end to end (``--quick``, tiny model) and print the JSON they
promise: both sides trained on the same real tokens, every figure present. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, model_dir: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--model-dir", str(model_dir), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_train_bench_compares_both_sides_on_the_same_tokens(tiny_model_dir: Path) -> None:
    out = run_quick("train_bench.py", tiny_model_dir)
    for key in (
        "ours_tokens_per_s",
        "hf_tokens_per_s",
        "tokens_per_s_ratio",
        "ours_tokens_per_cpu_s",
        "hf_tokens_per_cpu_s",
        "ours_peak_rss_mb",
        "hf_peak_rss_mb",
        "peak_rss_ratio",
        "meets_targets",
    ):
        assert key in out, key
    runs = {run["side"]: run for run in out["runs"]}
    assert set(runs) == {"ours", "hf"}
    assert out["tokens"] > 0
    assert runs["ours"]["tokens_per_epoch"] == runs["hf"]["tokens_per_epoch"] == out["tokens"]  # one epoch
    # The samples share the chat template's system turn: ours computes it once per row.
    assert out["share_prefix"] and 0 < out["ours_computed_tokens_per_epoch"] < out["tokens"]
    assert runs["ours"]["padding_fraction"] == 0 < runs["hf"]["padding_fraction"] < 1
    assert all(run["steps"] >= 1 and math.isfinite(run["final_loss"]) for run in runs.values())


def test_qlora_vs_lora_reports_both_heldout_losses(tiny_model_dir: Path) -> None:
    out = run_quick("qlora_vs_lora.py", tiny_model_dir)
    qlora, lora = out["qlora_eval_loss"], out["lora_eval_loss"]
    assert math.isfinite(qlora) and math.isfinite(lora) and qlora > 0 and lora > 0
    assert math.isclose(out["relative_difference"], (qlora - lora) / lora, abs_tol=2e-3)
    assert out["heldout_samples"] > 0 and out["train_samples"] == 8
    for side in ("qlora", "lora"):
        assert out[side]["steps"] >= 1
        assert math.isfinite(out[side]["eval_loss_before"])


def test_qlora_vs_lora_judges_the_mean_over_seeds(tiny_model_dir: Path) -> None:
    out = run_quick("qlora_vs_lora.py", tiny_model_dir, "--seeds", "0", "1")
    assert out["seeds"] == [0, 1] and [run["seed"] for run in out["runs"]] == [0, 1]
    mean = [sum(run[key] for run in out["runs"]) / 2 for key in ("qlora_eval_loss", "lora_eval_loss")]
    assert math.isclose(out["qlora_eval_loss"], mean[0], abs_tol=1e-3)  # the JSON is rounded to 3 places
    assert math.isclose(out["lora_eval_loss"], mean[1], abs_tol=1e-3)
    assert out["runs"][0]["lora_eval_loss"] != out["runs"][1]["lora_eval_loss"]  # other data, other result


def test_dpo_bench_compares_dpo_and_supervised_on_the_same_pairs(tiny_model_dir: Path) -> None:
    out = run_quick("dpo_bench.py", tiny_model_dir)
    runs = {run["side"]: run for run in out["runs"]}
    assert set(runs) == {"supervised", "dpo"} and out["pairs"] == runs["dpo"]["pairs"] == 6
    # DPO trains on both answers of each pair (its samples' tokens are more), its prompt shared by the two
    assert runs["dpo"]["tokens"] > runs["supervised"]["tokens"] > 0
    assert out["computed_tokens_ratio"] > 1 and runs["dpo"]["reference_seconds"] > 0
    for key in ("seconds_per_pair_ratio", "dpo_tokens_per_s", "supervised_tokens_per_s", "dpo_peak_rss_mb"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert all(run["steps"] >= 1 and math.isfinite(run["final_loss"]) for run in runs.values())
