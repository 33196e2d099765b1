"""Execution plans: every plan computes with NF4's numbers; the choice is measured, overridable
and cached; a CPU without fast bf16 (emulated with torch's AVX2 kernels) gets an fp32 plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters.base_model import load_base, load_nf4_model
from adapters.execution_plan import ALL_PLANS, ExecutionPlan, PlanRequest
from adapters.nf4_forms import NF4DenseLinear, is_packed_nf4
from adapters.plan_choice import CACHE_FILE, choose_plan, pick_fastest

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
PLANS = {name: ExecutionPlan.from_name(name) for name in ALL_PLANS}


def test_plan_names_round_trip_and_unknown_ones_are_refused() -> None:
    assert [ExecutionPlan.from_name(name).name for name in ALL_PLANS] == list(ALL_PLANS)
    assert PLANS["dense-fp32"].dtype == torch.float32 and PLANS["nf4-bf16"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="nf4-bf16"):
        ExecutionPlan.from_name("int8-fp32")


def test_dense_layers_compute_exactly_what_bitsandbytes_computes(tiny_model_dir: Path) -> None:
    packed = load_base(tiny_model_dir, "cpu", plan=PLANS["nf4-fp32"])
    dense = load_base(tiny_model_dir, "cpu", plan=PLANS["dense-fp32"])
    assert dense.linear_shapes == packed.linear_shapes
    for name, (width, _) in packed.linear_shapes.items():
        layer, copy = packed.model.get_submodule(name), dense.model.get_submodule(name)
        assert is_packed_nf4(layer) and isinstance(copy, NF4DenseLinear)
        assert not copy.weight.requires_grad and copy.weight.dtype == torch.float32
        eye = torch.eye(width)
        with torch.inference_mode():
            assert torch.equal(layer(eye), copy(eye)), name  # W^T, bit for bit
    # still 4-bit values: at most 16 distinct weights per 64-weight block
    blocks = dense.model.get_submodule("model.layers.0.mlp.up_proj").weight.reshape(-1, 64)
    assert max(len(torch.unique(block)) for block in blocks) <= 16


def test_every_plan_serves_the_same_spec_and_logits_within_tolerance(tiny_model_dir: Path) -> None:
    ids = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    outputs = {}
    for name, plan in PLANS.items():
        base = load_base(tiny_model_dir, "cpu", plan=plan)
        assert base.plan == plan
        outputs[name] = (base.spec.hash, base.model(input_ids=ids).logits.float().detach())
    spec, reference = outputs["nf4-fp32"]
    for name, (other_spec, logits) in outputs.items():
        assert other_spec == spec, name  # an adapter is compatible whatever the plan
        tolerance = 1e-5 if name.endswith("fp32") else BF16_ATOL
        assert (logits - reference).abs().max() <= tolerance, name


BF16_ATOL = 0.05
"""Largest logit difference between a bf16 plan and the fp32 reference on the tiny model."""


def test_an_operator_setting_fixes_the_plan_without_measuring(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_nf4_model(tiny_model_dir, CPU)
    plan = choose_plan(model, CPU, PlanRequest("float32", "dense"), tmp_path)
    assert plan.name == "dense-fp32" and "operator" in plan.reason and plan.measured is None
    assert not (tmp_path / CACHE_FILE).exists()


def test_dense_copies_over_the_budget_are_no_candidates(tiny_model_dir: Path) -> None:
    model = load_nf4_model(tiny_model_dir, CPU)
    plan = choose_plan(model, CPU, PlanRequest("float32", "auto", dense_budget_bytes=1000))
    assert plan.name == "nf4-fp32" and "budget" in plan.reason
    forced = choose_plan(model, CPU, PlanRequest("float32", "dense", dense_budget_bytes=1000))
    assert forced.name == "nf4-fp32" and "budget" in forced.reason  # never more memory than allowed


def test_the_measured_choice_is_cached_per_machine_and_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_nf4_model(tiny_model_dir, CPU)
    first = choose_plan(model, CPU, PlanRequest(), tmp_path)
    assert first.measured and set(first.measured) <= set(ALL_PLANS)
    assert all(set(works) == {"serve_1", "serve_16", "train"} for works in first.measured.values())
    cached = json.loads((tmp_path / CACHE_FILE).read_text())
    assert [entry["name"] for entry in cached.values()] == [first.name]
    again = choose_plan(load_nf4_model(tiny_model_dir, CPU), CPU, PlanRequest(), tmp_path)
    assert again.name == first.name and again.reason.startswith("cached")
    narrower = choose_plan(model, CPU, PlanRequest("float32"), tmp_path)  # other candidates: measured anew
    assert narrower.compute_dtype == "float32" and not narrower.reason.startswith("cached")
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2


def test_the_plan_closest_to_the_best_on_every_workload_wins() -> None:
    measured = {
        "nf4-bf16": {"serve_1": 1.0, "serve_16": 2.0, "train": 30.0},  # best serving, 1.5x train
        "dense-bf16": {"serve_1": 1.1, "serve_16": 2.1, "train": 20.0},  # never more than 1.1x
        "dense-fp32": {"serve_1": 3.0, "serve_16": 6.0, "train": 40.0},
    }
    assert pick_fastest(measured) == ("dense-bf16", pytest.approx(1.1))
    tied = {"dense-fp32": {"train": 1.0}, "nf4-fp32": {"train": 1.02}}
    assert pick_fastest(tied)[0] == "nf4-fp32"  # within 3 %: the one using less memory


def test_a_cpu_without_fast_bf16_gets_an_fp32_plan(tiny_model_dir: Path) -> None:
    """torch's AVX2 kernels (what an AVX2-only CPU runs) have no fast bf16 GEMM; the choice sees it."""
    code = (
        "import sys, torch; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "from adapters.base_model import load_base;"
        "base = load_base(Path(sys.argv[1]), 'cpu');"
        "print(base.plan.name); print(base.plan.reason)"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_dir), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    name, reason = done.stdout.strip().splitlines()[-2:]
    # The quick bf16 check usually decides ("bf16 matmul ... slower"); on a loaded machine its
    # ratio can blur and the full probe decides instead. Either way the plan must be fp32.
    assert name.endswith("fp32"), (name, reason)
