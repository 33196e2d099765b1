"""Batched multi-adapter LoRA in plain torch: every adapter of the batch in two matmuls per layer.

:func:`inject` wraps every linear layer a LoRA may target in a :class:`BatchedLoRALinear`.
Before each forward pass the engine calls :meth:`LoRABatch.set_rows` with one adapter (or None,
for ``base``) per row. For every wrapped layer the batch then holds the distinct adapters'
matrices concatenated along the rank axis, ``A_cat (sum r x in)`` and ``B_cat (out x sum r)``,
plus a 0/1 row mask that keeps, for each row, only its own adapter's rank block (nothing for a
``base`` row). The delta for the whole batch is ``((x @ A_cat^T) * mask) @ B_cat^T`` whatever
the mix: two dense matmuls instead of a loop over adapters (PEFT's mixed batch) and without the
per-row weight copies of a gather (Punica's BGMV), which dominate on CPUs. Ranks may differ. The
scale ``alpha / r`` (or ``alpha / sqrt(r)`` for rsLoRA) is folded into B at load time. Stacks are
rebuilt only when the batch's set of adapters changes, not at every step.

Nothing is merged into the 4-bit weights; the base layer runs untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from adapters.validation import lora_scaling

_PREFIX = "base_model.model."


@dataclass(frozen=True)
class LoRAWeights:
    """One adapter, ready to stack: per module ``(A [r, in], B*scale [out, r])``."""

    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.modules.values())


def load_lora(path: Path, dtype: torch.dtype, device: torch.device) -> LoRAWeights:
    """Read a validated PEFT LoRA directory (safetensors only) into :class:`LoRAWeights`."""
    config = json.loads((path / "adapter_config.json").read_text())
    scale = lora_scaling(float(config["lora_alpha"]), int(config["r"]), bool(config.get("use_rslora")))
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
    return LoRAWeights(modules)


class LoRABatch:
    """The adapters of the rows in the current forward pass, stacked per module."""

    def __init__(self) -> None:
        self.row_index: torch.Tensor | None = None
        """[batch] long: each row's adapter index in the stacks, -1 for ``base``; None when all are base."""
        self.stacks: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        """module -> (A_cat, B_cat, rank-block mask per adapter [adapters, sum r])."""
        self._key: tuple[str, ...] = ()

    def set_rows(
        self,
        rows: list[str | None],
        adapters: dict[str, LoRAWeights],
        device: torch.device,
    ) -> None:
        """Point every row at its adapter's rank block; restack if the set of adapters changed."""
        distinct = tuple(sorted({key for key in rows if key is not None}))
        if not distinct:
            self.row_index, self.stacks, self._key = None, {}, ()
            return
        if distinct != self._key:
            self.stacks = _stack([adapters[k] for k in distinct])
            self._key = distinct
        index = {key: i for i, key in enumerate(distinct)}
        # -1 (base) picks the last, all-zero row of each module's block mask.
        self.row_index = torch.tensor([index[k] if k else -1 for k in rows], dtype=torch.long, device=device)


def _stack(adapters: list[LoRAWeights]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Concatenate the adapters per module (their tensors already have the serving device and dtype)."""
    stacks: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for module in sorted({m for a in adapters for m in a.modules}):
        present = [(i, a.modules[module]) for i, a in enumerate(adapters) if module in a.modules]
        a_cat = torch.cat([a for _, (a, _) in present])
        b_cat = torch.cat([b for _, (_, b) in present], dim=1)
        blocks = a_cat.new_zeros((len(adapters) + 1, a_cat.shape[0]))
        start = 0
        for i, (a, _) in present:
            blocks[i, start : start + a.shape[0]] = 1
            start += a.shape[0]
        stacks[module] = (a_cat, b_cat, blocks)  # row -1 of blocks (all zeros) serves base rows
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
        rows = self.batch.row_index
        stack = self.batch.stacks.get(self.name) if rows is not None else None
        if stack is None:
            return out
        a_cat, b_cat, blocks = stack
        hidden = x.to(a_cat.dtype) @ a_cat.t()  # [batch, tokens, sum r]
        hidden = hidden * blocks[rows].unsqueeze(1)
        return out + (hidden @ b_cat.t()).to(out.dtype)


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
