"""Batched multi-adapter LoRA in plain torch: a batch of any adapter mix in a few batched matmuls.

:func:`inject` wraps every linear layer a LoRA may target in a :class:`BatchedLoRALinear`.
Before each forward pass the engine calls :meth:`LoRABatch.set_rows` with one adapter key (or
None, for ``base``) per row and the ready forms (:class:`~server.engine.lora_stack.LoRAStack`) of those
adapters. The rows are grouped by adapter: a gather of the activations into ``[G, M, ...]``
(G adapters, M rows in the largest group; shorter groups are padded). Then per input group
(q/k/v, gate/up: modules reading the same tensor) ``h = bmm(x_g, A)`` runs once, and per module
``y = bmm(h[..., module's slice], B)``, gathered back to row order and added to the base output.

Why this form (Punica's SGMV, in plain torch): the work is G·M·r per token, as for one adapter
when rows spread evenly over the adapters; no weight is copied per step (a per-row gather, BGMV,
copies every row's A and B at every layer and step), and no rank block is computed for rows that
do not use it (a dense product over the concatenated ranks costs G times the flops). Base rows
sit in no group and read a zeroed padding slot. A mixed batch's adapters sit in slots of one
stack (:mod:`server.engine.lora_slots`): one that joins is copied into a free slot, the others stay; one
adapter alone uses its ready form directly.

Nothing is merged into the 4-bit weights; the base layer runs untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from server.engine.lora_slots import SlotStack
from server.engine.lora_stack import LoRAStack


class _Plan:
    """How this forward pass's rows map onto the stack's groups, plus the shared-input cache."""

    def __init__(self, stack: LoRAStack, groups: list[list[int]], rows: int, device: torch.device) -> None:
        self.stack = stack
        self.groups = len(groups)
        has_base = sum(len(g) for g in groups) < rows
        width = max(len(g) for g in groups)
        if has_base and all(len(g) == width for g in groups):
            width += 1  # base rows need a padding slot to read zeros from
        self.width = width
        perm: list[int] = []
        pos = [0] * rows
        pad = []
        zero_slot = 0
        for g, members in enumerate(groups):
            for j in range(width):
                if j < len(members):
                    perm.append(members[j])
                    pos[members[j]] = len(perm) - 1
                    pad.append(1.0)
                else:
                    perm.append(members[0] if members else 0)
                    zero_slot = len(perm) - 1
                    pad.append(0.0)
        in_groups = {r for members in groups for r in members}
        for r in range(rows):
            if r not in in_groups:
                pos[r] = zero_slot
        identity = len(perm) == rows and perm == list(range(rows))
        self.perm = None if identity else torch.tensor(perm, dtype=torch.long, device=device)
        self.pos = None if identity else torch.tensor(pos, dtype=torch.long, device=device)
        self.pad = torch.tensor(pad, device=device).view(len(groups), width, 1, 1) if has_base else None
        self._x: torch.Tensor | None = None
        self._group = ""
        self._h: tuple[torch.Tensor, ...] = ()
        self.direct = self.perm is None and self.pad is None and self.groups == 1
        """One adapter, every row on it: plain matmuls on the activations as they are, no gathers."""
        if self.direct:
            self._single_a, self._single_b = stack.single

    def hidden(self, group: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` grouped by adapter times the group's A, split per member: ``[G, M*T, r]`` each
        (``[rows, T, r]`` when :attr:`direct`). Computed once per input tensor for the group."""
        if x is self._x and group == self._group:
            return self._h
        if self.direct:
            a = self._single_a[group]
            h = torch.matmul(x.to(a.dtype), a)
        else:
            a = self.stack.a[group]
            xs = x.reshape(x.shape[0], -1, x.shape[-1])
            tokens = xs.shape[1]
            if self.perm is not None:
                xs = xs.index_select(0, self.perm)
            h = torch.bmm(xs.to(a.dtype).reshape(self.groups, self.width * tokens, -1), a)
            if self.pad is not None:
                h.view(self.groups, self.width, tokens, -1).mul_(self.pad)
        widths = self.stack.widths[group]
        parts = h.split(widths, dim=-1) if len(widths) > 1 else (h,)
        self._x, self._group, self._h = x, group, parts
        return parts

    def add_delta(self, module: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` (the base layer's output for ``x``) plus every row's LoRA delta, in place."""
        member = self.stack.members.get(module)
        if member is None:
            return out
        group, place = member[0], member[1]
        h = self.hidden(group, x)[place]
        if self.direct:
            return out.add_(torch.matmul(h, self._single_b[module]))
        y = torch.bmm(h, self.stack.b[module])
        y = y.view(self.groups * self.width, -1, y.shape[-1])
        if self.pos is not None:
            y = y.index_select(0, self.pos)
        return out.add_(y.view(out.shape))


class LoRABatch:
    """The adapters of the rows in the current forward pass (see the module docstring)."""

    def __init__(self) -> None:
        self.plan: _Plan | None = None
        """None when every row is ``base``."""
        self.slots = SlotStack()
        """Where a mixed batch's adapters are stacked (see :mod:`server.engine.lora_slots`)."""

    def set_rows(self, rows: list[str | None], adapters: Mapping[str, LoRAStack], device: torch.device) -> None:
        """Point every row at its adapter; put the adapters of a mixed batch in slots."""
        distinct = sorted({key for key in rows if key is not None})
        if not distinct:
            self.plan = None
            return
        if len(distinct) == 1:
            # One adapter (every prefill, one-tenant batches): its ready form, no copy.
            stack, index = adapters[distinct[0]], {distinct[0]: 0}
        else:
            stack, index = self.slots.place(distinct, adapters)
        groups: list[list[int]] = [[] for _ in range(stack.size)]
        for r, key in enumerate(rows):
            if key is not None:
                groups[index[key]].append(r)
        self.plan = _Plan(stack, groups, len(rows), device)

    def clear(self) -> None:
        """Forget the stacked adapters (their memory goes back)."""
        self.plan = None
        self.slots.clear()


class BatchedLoRALinear(torch.nn.Module):
    """A base linear layer plus the batch's LoRA deltas (see the module docstring)."""

    def __init__(self, base_layer: torch.nn.Module, name: str, batch: LoRABatch) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        plan = self.batch.plan
        if plan is None:
            return out
        return plan.add_delta(self.name, x, out)


def inject(model: torch.nn.Module, shapes: Mapping[str, tuple[int, int]]) -> LoRABatch:
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
