"""Time candidate execution plans on the model's own layer shapes, in a second or two.

:func:`probe_plans` takes an NF4-loaded base that has not run yet and, for each candidate plan,
builds one decoder layer's linear layers in that plan's form (copies of the real layers: the
packed ones deep-copied, the dense ones dequantized from them) and the output head in the
plan's compute dtype. It times three workloads that stand for what the server and the trainer do:

- ``serve_1``: one decode step of one row (every linear layer on one token, the head on one);
- ``serve_16``: one decode step of 16 rows;
- ``train``: forward and backward of a 256-token packed row through the layer (gradients flow
  to the input, as they do through a frozen base under LoRA) and of the head on a third of it
  (the labelled positions).

Decode is memory-bound, so the serve workloads run through as many real decoder layers as it takes
for the candidate's weights to exceed :data:`WORKING_SET` (more than a CPU's last-level cache;
one cache-resident layer would flatter the large dense forms); training is compute-bound and runs
through :data:`TRAIN_LAYERS`. A workload's estimate is ``decoder layers x time per layer + head
time``. Attention and norms are left out:
they are the same work in every plan and small next to the matmuls at these lengths. A candidate
whose first call is already far slower than the best one so far is not repeated, so a CPU
without fast bf16 spends a fraction of a second on the bf16 candidates, not minutes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import torch

from adapters.execution_plan import ExecutionPlan
from adapters.nf4_forms import densify, is_packed_nf4

if TYPE_CHECKING:
    from bitsandbytes.nn.modules import Linear4bit
    from transformers import PreTrainedModel

WORKLOADS = ("serve_1", "serve_16", "train")
_ROWS = {"serve_1": 1, "serve_16": 16, "train": 256}
ROUNDS = 2
_BUDGET_S = 0.05
"""Time spent repeating the bf16 check's matmuls."""
_GIVE_UP = 2.5
"""A first call this many times slower than the best so far is not repeated."""
WORKING_SET = 64 << 20
"""Bytes of weights the serve workloads stream through (beyond any CPU's last-level cache)."""
TRAIN_LAYERS = 1


def decoder_layers(model: torch.nn.Module) -> list[list[Linear4bit]]:
    """The packed linear layers of every decoder layer, in order."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            layers = [[m for m in layer.modules() if is_packed_nf4(m)] for layer in module]
            if layers[0]:
                return layers
    raise ValueError("no decoder layer with NF4 linear layers found")


def first_layer(model: torch.nn.Module) -> tuple[list[Linear4bit], int]:
    """The packed linear layers of the first decoder layer, and how many decoder layers there are."""
    layers = decoder_layers(model)
    return layers[0], len(layers)


def _weight_bytes(plan: ExecutionPlan, linears: Sequence[Linear4bit]) -> int:
    per_weight = plan.dtype.itemsize if plan.weights == "dense" else 0.5
    return int(sum(m.in_features * m.out_features * per_weight for m in linears))


def layers_to_stream(plan: ExecutionPlan, layers: Sequence[Sequence[Linear4bit]], work: str) -> int:
    """How many decoder layers ``work`` runs through for ``plan`` (see the module docstring)."""
    if work == "train":
        return min(TRAIN_LAYERS, len(layers))
    return min(len(layers), max(1, -(-WORKING_SET // max(1, _weight_bytes(plan, layers[0])))))


def _timed(fn: Callable[[], object], best: float | None) -> float:
    """Seconds per call of ``fn``: the fastest of as many calls as fit the budget."""
    fn()  # warm-up (the fused CPU kernel repacks its weights here)
    start = time.perf_counter()
    fn()
    fastest = time.perf_counter() - start
    if best is not None and fastest > _GIVE_UP * best:
        return fastest
    spent = fastest
    while spent < _BUDGET_S:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        fastest, spent = min(fastest, took), spent + took
    return fastest


def _layers_for(plan: ExecutionPlan, linears: Sequence[Linear4bit], train: bool) -> list[torch.nn.Linear]:
    if plan.weights == "dense":
        return [densify(m, plan.dtype) for m in linears]
    copies: list[torch.nn.Linear] = []
    for module in linears:
        clone = copy.deepcopy(module)
        clone.compute_dtype, clone.compute_type_is_set = plan.dtype, True
        if train or plan.compute_dtype != "bfloat16":  # as apply_plan and the trainer do
            clone.support_avx512bf16_for_cpu = False
        copies.append(clone)
    return copies


def _workload(modules: Sequence[torch.nn.Linear], rows: int, train: bool, dtype: torch.dtype) -> Callable[[], None]:
    """One call of the workload: every module on ``rows`` tokens (forward, and backward to the
    inputs when ``train``)."""
    inputs = [torch.randn(rows, m.in_features, dtype=dtype, requires_grad=train) for m in modules]
    for m in modules:
        m.train(train)

    def run() -> None:
        if not train:
            with torch.inference_mode():
                for m, x in zip(modules, inputs):
                    m(x)
            return
        total = sum(m(x).float().sum() for m, x in zip(modules, inputs))
        assert isinstance(total, torch.Tensor)
        torch.autograd.backward(total)

    return run


def bf16_slowdown(width: int) -> float:
    """How many times slower a bf16 matmul of ``64 x width x width`` runs than the fp32 one."""
    a, b = torch.randn(64, width), torch.randn(width, width)
    fp32 = _timed(lambda: a @ b, None)
    a16, b16 = a.bfloat16(), b.bfloat16()
    return _timed(lambda: a16 @ b16, fp32) / fp32


def output_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The model's output head (its ``lm_head``, as ``get_output_embeddings()`` finds it)."""
    head = model.get_output_embeddings()
    return cast(torch.nn.Linear, head)


def _head(out_head: torch.nn.Linear, dtype: torch.dtype) -> torch.nn.Linear:
    head = torch.nn.Linear(out_head.in_features, out_head.out_features, bias=False, device="meta")
    head.weight = torch.nn.Parameter(out_head.weight.detach().to(dtype), requires_grad=False)
    return head


def probe_plans(model: PreTrainedModel, candidates: Sequence[ExecutionPlan]) -> dict[str, dict[str, float]]:
    """Per candidate plan name, per workload: estimated seconds of one step (see the module docstring).

    The candidates take turns, :data:`ROUNDS` times per workload, and each keeps its fastest
    round: a burst of other work on a shared machine slows one round of every candidate, not
    every round of one.
    """
    layers = decoder_layers(model)
    depth = len(layers)
    heads = {plan.dtype: _head(output_head(model), plan.dtype) for plan in candidates}
    built: dict[tuple[str, int, bool], list[torch.nn.Linear]] = {}
    results: dict[str, dict[str, float]] = {plan.name: {} for plan in candidates}
    for work in WORKLOADS:
        rows, train = _ROWS[work], work == "train"
        runs: dict[str, tuple[float, Callable[[], None], Callable[[], None]]] = {}
        for plan in candidates:
            count = layers_to_stream(plan, layers, work)
            key = (plan.name, count, train)
            if key not in built:
                built[key] = _layers_for(plan, [m for layer in layers[:count] for m in layer], train)
            body = _workload(built[key], rows, train, plan.dtype)
            head = _workload([heads[plan.dtype]], max(1, rows // 3) if train else rows, train, plan.dtype)
            runs[plan.name] = (depth / count, body, head)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(ROUNDS):
            best = min((min(t) for t in times.values() if t), default=None)
            for name, (scale, body, head) in runs.items():
                if best is not None and min(times[name]) > _GIVE_UP * best:
                    continue  # out of the race: not worth another round
                if round_ == 0:
                    body(), head()  # warm-up (the fused CPU kernel repacks its weights here)
                start = time.perf_counter()
                body()
                middle = time.perf_counter()
                head()
                times[name].append(scale * (middle - start) + time.perf_counter() - middle)
        for name, measured in times.items():
            results[name][work] = min(measured)
    return results
