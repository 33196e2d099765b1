"""Choose the execution plan for this machine and model: by measurement, cached, overridable.

:func:`choose_plan` answers in this order:

1. **CUDA**: bitsandbytes' NF4 kernels with bf16 compute where the GPU supports bf16 (else
   fp32); dense copies would give up the 4-bit memory saving the GPU is there for.
2. **The operator's settings** (:class:`~adapters.execution_plan.PlanRequest`): a fixed dtype and
   weights form is used as given; a partly fixed one narrows the candidates.
3. **Dense copies that do not fit** the memory budget are no candidates.
4. **The cache**: ``execution_plans.json`` in the data directory holds earlier choices, keyed by
   the machine (:func:`adapters.machine.machine_key`: CPU, kernel capability, versions), the
   model's layer shapes, the candidates and the thread count.
5. **Measurement**: a bf16 matmul that runs more than :data:`BF16_TOO_SLOW` times slower than
   fp32 (no fast bf16 kernel: AVX2-only CPUs) rules out the bf16 candidates at once; the rest
   are timed by :func:`adapters.plan_probe.probe_plans` and the plan whose worst workload is
   closest to that workload's best is kept (ties within 3 % go to the plan using less memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapters.execution_plan import ALL_PLANS, ComputeDtype, ExecutionPlan, PlanRequest
from adapters.machine import machine_key, total_memory_bytes
from adapters.nf4_forms import is_packed_nf4
from adapters.plan_probe import bf16_slowdown, first_layer, output_head, probe_plans

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

BF16_TOO_SLOW = 3.0
"""A bf16 matmul this many times slower than fp32 means the CPU has no fast bf16 kernel."""
CACHE_FILE = "execution_plans.json"
_TIE = 1.03
_MEMORY_ORDER = ("nf4-bf16", "nf4-fp32", "dense-bf16", "dense-fp32")
"""Least memory first: the tie-break."""


def dense_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes the base's NF4 linear weights take once dequantized into ``dtype``."""
    itemsize = torch.tensor([], dtype=dtype).element_size()
    return sum(m.in_features * m.out_features * itemsize for m in model.modules() if is_packed_nf4(m))


def _cuda_plan(request: PlanRequest) -> ExecutionPlan:
    if request.compute_dtype != "auto":
        return ExecutionPlan(request.compute_dtype, "nf4", "CUDA: NF4 kernels; compute dtype set by the operator")
    if torch.cuda.is_bf16_supported():
        return ExecutionPlan("bfloat16", "nf4", "CUDA with bf16: NF4 kernels, bf16 compute (the QLoRA recipe)")
    return ExecutionPlan("float32", "nf4", "CUDA without bf16 support: NF4 kernels, fp32 compute")


def _cache_key(model: PreTrainedModel, candidates: list[ExecutionPlan], threads: int) -> str:
    linears, depth = first_layer(model)
    head = output_head(model)
    shape = {
        "layer": [(m.in_features, m.out_features) for m in linears],
        "depth": depth,
        "head": list(head.weight.shape),
        "candidates": [p.name for p in candidates],
        "threads": threads,
        "machine": machine_key(),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:24]


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path | None, key: str, plan: ExecutionPlan) -> None:
    if path is None:
        return
    data = _read_cache(path)
    data[key] = {**plan.to_dict(), "measured_at": int(time.time())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-plans-", delete=False) as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(f.name, path)
    except OSError as exc:  # a read-only data directory costs a re-measurement, nothing more
        log.warning("could not cache the execution plan in %s: %s", path, exc)


def pick_fastest(measured: dict[str, dict[str, float]]) -> tuple[str, float]:
    """The plan whose worst workload ratio to that workload's best is smallest, and that ratio."""
    works = {w for times in measured.values() for w in times}
    best = {w: min(times[w] for times in measured.values() if w in times) for w in works}
    score = {name: max(times[w] / best[w] for w in times) for name, times in measured.items() if times}
    top = min(score.values())
    tied = [name for name in _MEMORY_ORDER if name in score and score[name] <= top * _TIE]
    return tied[0], score[tied[0]]


def choose_plan(
    model: PreTrainedModel,
    device: torch.device,
    request: PlanRequest | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> ExecutionPlan:
    """The plan for ``model`` (NF4-loaded, not yet run) on ``device``; see the module docstring."""
    request = request or PlanRequest()
    if device.type == "cuda":
        return _cuda_plan(request)
    wanted = [p for p in map(ExecutionPlan.from_name, ALL_PLANS) if request.allows(p)]
    budget = request.dense_budget_bytes if request.dense_budget_bytes is not None else total_memory_bytes() // 2
    candidates = [p for p in wanted if p.weights == "nf4" or dense_bytes(model, p.dtype) <= budget]
    note = "" if candidates == wanted else f"dense copies over the {budget >> 20} MiB budget"
    if not candidates:  # only dense was asked for, and it does not fit: keep the weights packed
        candidates = [replace(p, weights="nf4") for p in wanted]
    if len(candidates) == 1:
        why = "set by the operator" if request.fixed else "the only candidate"
        return ExecutionPlan(candidates[0].compute_dtype, candidates[0].weights, "; ".join(filter(None, [why, note])))
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # measure with the threads the plan will run with
    try:
        key = _cache_key(model, candidates, torch.get_num_threads())
        cache_path = cache_dir / CACHE_FILE if cache_dir is not None else None
        cached = _read_cache(cache_path).get(key)
        if isinstance(cached, dict) and cached.get("name") in ALL_PLANS:
            measured = {n: {w: ms / 1000 for w, ms in t.items()} for n, t in cached.get("measured_ms", {}).items()}
            return replace(
                ExecutionPlan.from_name(cached["name"], f"cached: {cached.get('reason', '')}"),
                measured=measured or None,
            )
        plan = _measure(model, candidates)
        if note:
            plan = replace(plan, reason=f"{plan.reason}; {note}")
        _write_cache(cache_path, key, plan)
        return plan
    finally:
        torch.set_num_threads(saved)


def unquantized_plan(device: torch.device, request: PlanRequest | None = None) -> ExecutionPlan:
    """The compute dtype for a 16-bit base (no NF4): the requested one, else bf16 where it is fast."""
    request = request or PlanRequest()
    if request.compute_dtype != "auto":
        return ExecutionPlan(request.compute_dtype, "dense", "set by the operator")
    if device.type == "cuda":
        return replace(_cuda_plan(request), weights="dense")
    slowdown = bf16_slowdown(1024)
    dtype: ComputeDtype = "float32" if slowdown > BF16_TOO_SLOW else "bfloat16"
    return ExecutionPlan(dtype, "dense", f"bf16 matmul {slowdown:.1f}x the fp32 time here")


def _measure(model: PreTrainedModel, candidates: list[ExecutionPlan]) -> ExecutionPlan:
    started = time.perf_counter()
    notes = []
    has_fp32 = any(p.compute_dtype == "float32" for p in candidates)
    if has_fp32 and any(p.compute_dtype == "bfloat16" for p in candidates):
        linears, _ = first_layer(model)
        slowdown = bf16_slowdown(max(512, linears[0].in_features))
        if slowdown > BF16_TOO_SLOW:
            candidates = [p for p in candidates if p.compute_dtype == "float32"]
            notes.append(f"bf16 matmul {slowdown:.0f}x slower than fp32 here (no fast bf16 kernel)")
    measured = probe_plans(model, candidates)
    name, score = pick_fastest(measured)
    notes.append(
        f"fastest of {', '.join(measured)} on this model's layer shapes "
        f"(worst workload {score:.2f}x its best; probe {time.perf_counter() - started:.1f} s)"
    )
    return replace(ExecutionPlan.from_name(name, "; ".join(notes)), measured=measured)
