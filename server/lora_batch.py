"""Batched multi-adapter LoRA in plain torch (the gather + batched-matmul form of Punica's BGMV).

:func:`inject` wraps every linear layer a LoRA may target in a :class:`BatchedLoRALinear`.
Before each forward pass the engine calls :meth:`LoRABatch.set_rows` with one adapter (or None,
for ``base``) per row. For every wrapped layer the batch then holds stacked tensors
``A[s] (r_max x in)`` and ``B[s] (out x r_max)`` over the distinct adapters in the batch (slot 0
is all zeros, for base rows; smaller ranks are zero-padded), and the delta for the whole batch is
one gather and two batched matmuls, ``(x @ A[slot]^T) @ B[slot]^T``, whatever the mix. The
scale ``alpha / r`` (or ``alpha / sqrt(r)`` for rsLoRA) is folded into B at load time.
Stacks are rebuilt only when the batch's set of adapters changes, not at every step.

Nothing is merged into the 4-bit weights; the base layer runs untouched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

_PREFIX = "base_model.model."


@dataclass(frozen=True)
class LoRAWeights:
    """One adapter, ready to stack: per module ``(A [r, in], B*scale [out, r])``."""

    rank: int
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.modules.values())


def load_lora(path: Path, dtype: torch.dtype, device: torch.device) -> LoRAWeights:
    """Read a validated PEFT LoRA directory (safetensors only) into :class:`LoRAWeights`."""
    config = json.loads((path / "adapter_config.json").read_text())
    rank = int(config["r"])
    alpha = float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(str(path / "adapter_model.safetensors"), device="cpu")
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len(_PREFIX) : -len(".lora_A.weight")]
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        modules[module] = (
            a.to(device=device, dtype=dtype).contiguous(),
            (b.float() * scale).to(device=device, dtype=dtype).contiguous(),
        )
    return LoRAWeights(rank, modules)


class LoRABatch:
    """The adapters of the rows in the current forward pass, stacked per module."""

    def __init__(self) -> None:
        self.row_slots: torch.Tensor | None = None
        """Slot per row ([batch] long); None when every row is ``base``."""
        self.stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._key: tuple[str, ...] = ()

    def set_rows(
        self,
        rows: list[str | None],
        adapters: dict[str, LoRAWeights],
        shapes: dict[str, tuple[int, int]],
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        """Point every row at its adapter's slot; restack if the set of adapters changed."""
        distinct = tuple(sorted({key for key in rows if key is not None}))
        if not distinct:
            self.row_slots, self.stacks, self._key = None, {}, ()
            return
        if distinct != self._key:
            self.stacks = _stack([adapters[k] for k in distinct], shapes, device, dtype)
            self._key = distinct
        slot = {key: i + 1 for i, key in enumerate(distinct)}
        self.row_slots = torch.tensor([slot.get(k, 0) if k else 0 for k in rows], dtype=torch.long, device=device)


def _stack(
    adapters: list[LoRAWeights], shapes: dict[str, tuple[int, int]], device: torch.device, dtype: torch.dtype
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    rank = max(a.rank for a in adapters)
    stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module in sorted({m for a in adapters for m in a.modules}):
        fan_in, fan_out = shapes[module]
        a_stack = torch.zeros((len(adapters) + 1, rank, fan_in), dtype=dtype, device=device)
        b_stack = torch.zeros((len(adapters) + 1, fan_out, rank), dtype=dtype, device=device)
        for slot, adapter in enumerate(adapters, start=1):
            if module in adapter.modules:
                a, b = adapter.modules[module]
                a_stack[slot, : a.shape[0]] = a
                b_stack[slot, :, : b.shape[1]] = b
        stacks[module] = (a_stack, b_stack)
    return stacks


class BatchedLoRALinear(torch.nn.Module):
    """A base linear layer plus the batch's LoRA deltas (see the module docstring)."""

    def __init__(self, base_layer: torch.nn.Module, name: str, batch: LoRABatch) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        slots = self.batch.row_slots
        stack = self.batch.stacks.get(self.name) if slots is not None else None
        if stack is None:
            return out
        a_stack, b_stack = stack
        a = a_stack.index_select(0, slots)  # [batch, r, in]
        b = b_stack.index_select(0, slots)  # [batch, out, r]
        hidden = torch.bmm(x.to(a.dtype), a.transpose(1, 2))  # [batch, tokens, r]
        return out + torch.bmm(hidden, b.transpose(1, 2)).to(out.dtype)


def inject(model: torch.nn.Module, shapes: dict[str, tuple[int, int]]) -> LoRABatch:
    """Wrap every module named in ``shapes`` (once); return the batch state they share."""
    batch = LoRABatch()
    for name in shapes:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child)
        if isinstance(layer, BatchedLoRALinear):
            raise RuntimeError(f"{name} already has batched LoRA")
        setattr(parent, child, BatchedLoRALinear(layer, name, batch))
    return batch
