"""An execution plan: how this machine computes with the NF4 base.

The base is always stored as NF4 with double quantization (the QLoRA recipe; the adapter
manifest's spec names it). A plan decides only how the numbers are computed:

- ``compute_dtype``: ``bfloat16`` where the device has fast bf16 matmuls (CUDA with bf16, CPUs
  with AVX512-BF16 or AMX), ``float32`` elsewhere. On a CPU with AVX2 only, torch's bf16 GEMM
  has no fast kernel (measured 55x slower than fp32 for a 256x576 by 576x1536 product).
- ``weights``: ``nf4`` keeps bitsandbytes' packed layers (dequantized at every forward, or fused
  kernels where bitsandbytes has them); ``dense`` dequantizes every NF4 weight once into a plain
  linear layer of the compute dtype (:mod:`adapters.nf4_forms`), the same values without the
  per-step dequantization, at 2-4 bytes per weight instead of about 0.5. CPUs only.

A plan's name is ``<weights>-<dtype>`` (``nf4-bf16``, ``dense-fp32``, ...). Which plan runs is
chosen by measurement (:mod:`adapters.plan_choice`) or fixed by the operator through
:class:`PlanRequest` (``SWAPLORA_COMPUTE_DTYPE``, ``SWAPLORA_CPU_WEIGHTS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch

ComputeDtype = Literal["bfloat16", "float32"]
Weights = Literal["nf4", "dense"]

_SHORT = {"bfloat16": "bf16", "float32": "fp32"}
_LONG = {short: long for long, short in _SHORT.items()}


@dataclass(frozen=True)
class ExecutionPlan:
    """How the base computes (see the module docstring)."""

    compute_dtype: ComputeDtype
    weights: Weights
    reason: str = field(default="", compare=False)
    """Why this plan was chosen, for the start-up log and ``/ready``."""
    measured: dict[str, dict[str, float]] | None = field(default=None, compare=False)
    """Per candidate plan, per workload: seconds of the probe (when chosen by measurement)."""

    @property
    def name(self) -> str:
        return f"{self.weights}-{_SHORT[self.compute_dtype]}"

    @property
    def dtype(self) -> torch.dtype:
        return cast(torch.dtype, getattr(torch, self.compute_dtype))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "compute_dtype": self.compute_dtype,
            "weights": self.weights,
            "reason": self.reason,
        }
        if self.measured:
            out["measured_ms"] = {
                plan: {work: round(seconds * 1000, 3) for work, seconds in works.items()}
                for plan, works in self.measured.items()
            }
        return out

    @classmethod
    def from_name(cls, name: str, reason: str = "") -> ExecutionPlan:
        """``nf4-bf16`` -> the plan; ValueError naming the valid names otherwise."""
        weights, _, short = name.partition("-")
        if weights not in ("nf4", "dense") or short not in _LONG:
            raise ValueError(f"unknown execution plan {name!r}; expected one of {', '.join(ALL_PLANS)}")
        return cls(_LONG[short], weights, reason)  # type: ignore[arg-type]


ALL_PLANS = ("nf4-bf16", "nf4-fp32", "dense-bf16", "dense-fp32")


@dataclass(frozen=True)
class PlanRequest:
    """What the operator asked for: ``auto`` leaves the choice to measurement."""

    compute_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    cpu_weights: Literal["auto", "nf4", "dense"] = "auto"
    dense_budget_bytes: int | None = None
    """Largest dense copy of the base's linear weights allowed (None: half the machine's memory)."""

    def allows(self, plan: ExecutionPlan) -> bool:
        return self.compute_dtype in ("auto", plan.compute_dtype) and self.cpu_weights in ("auto", plan.weights)

    @property
    def fixed(self) -> bool:
        return self.compute_dtype != "auto" and self.cpu_weights != "auto"

    def fixed_plan(self) -> ExecutionPlan | None:
        """The plan this request fixes (neither setting ``auto``), else None (it is measured)."""
        if self.compute_dtype == "auto" or self.cpu_weights == "auto":
            return None
        return ExecutionPlan(self.compute_dtype, self.cpu_weights)
