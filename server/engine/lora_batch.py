"""Batched multi-adapter LoRA in plain torch: a batch of any adapter mix in a few batched matmuls.

:func:`inject` wraps every linear layer a LoRA may target in a :class:`BatchedLoRALinear`.
Before each forward pass the engine calls :meth:`LoRABatch.set_adapters` with one adapter key
(or None, for ``base``) per batch row and the loaded adapters
(:class:`~server.engine.lora_stack.LoRAStack`). The rows are grouped into one *segment* per
adapter (LoRAX's word): a gather of the activations into ``[G, M, ...]`` (G adapters, M rows in
the largest segment; shorter segments are padded). Then per input group (q/k/v, gate/up: modules
reading the same tensor) the *shrink* ``h = bmm(x_g, A)`` runs once, and per module the *expand*
``y = bmm(h[..., module's slice], B)``, gathered back to row order and added to the base output.

Why this form (Punica's SGMV, in plain torch): the work is G·M·r per token, as for one adapter
when rows spread evenly over the adapters; no weight is copied per step (a per-row gather, BGMV,
copies every row's A and B at every layer and step), and no rank block is computed for rows that
do not use it (a dense product over the concatenated ranks costs G times the flops). Base rows
sit in no segment and read a zeroed padding position. A mixed batch's adapters sit in slots of
one stack (:mod:`server.engine.lora_slots`): one that joins is copied into a free slot, the others
stay; one adapter alone is used as loaded, with no copy.

Nothing is merged into the 4-bit weights; the base layer runs untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from server.engine.lora_slots import SlotStack
from server.engine.lora_stack import LoRAStack


class _Segments:
    """This forward pass's rows in one segment per slot of the stack, plus the shrink's cache."""

    def __init__(self, stack: LoRAStack, segments: list[list[int]], rows: int, device: torch.device) -> None:
        self.stack = stack
        self.count = len(segments)
        has_base = sum(len(s) for s in segments) < rows
        width = max(len(s) for s in segments)
        if has_base and all(len(s) == width for s in segments):
            width += 1  # base rows need a padding position to read zeros from
        self.width = width
        perm: list[int] = []
        pos = [0] * rows
        pad = []
        zero_position = 0
        for segment in segments:
            for j in range(width):
                if j < len(segment):
                    perm.append(segment[j])
                    pos[segment[j]] = len(perm) - 1
                    pad.append(1.0)
                else:
                    perm.append(segment[0] if segment else 0)
                    zero_position = len(perm) - 1
                    pad.append(0.0)
        in_segments = {r for segment in segments for r in segment}
        for r in range(rows):
            if r not in in_segments:
                pos[r] = zero_position
        identity = len(perm) == rows and perm == list(range(rows))
        self.perm = None if identity else torch.tensor(perm, dtype=torch.long, device=device)
        self.pos = None if identity else torch.tensor(pos, dtype=torch.long, device=device)
        self.pad = torch.tensor(pad, device=device).view(len(segments), width, 1, 1) if has_base else None
        self._x: torch.Tensor | None = None
        self._group = ""
        self._h: tuple[torch.Tensor, ...] = ()
        self.direct = self.perm is None and self.pad is None and self.count == 1
        """One adapter, every row on it: plain matmuls on the activations as they are, no gathers."""
        if self.direct:
            self._single_a, self._single_b = stack.single

    def shrink(self, group: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` in segments times the input group's A, split per member: ``[G, M*T, r]`` each
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
            h = torch.bmm(xs.to(a.dtype).reshape(self.count, self.width * tokens, -1), a)
            if self.pad is not None:
                h.view(self.count, self.width, tokens, -1).mul_(self.pad)
        widths = self.stack.widths[group]
        parts = torch.split(h, widths, dim=-1) if len(widths) > 1 else (h,)
        self._x, self._group, self._h = x, group, parts
        return parts

    def expand_into(self, module: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` (the base layer's output for ``x``) plus every row's LoRA delta (shrink, then
        expand with the module's B), in place."""
        member = self.stack.members.get(module)
        if member is None:
            return out
        h = self.shrink(member.group, x)[member.place]
        if self.direct:
            return out.add_(torch.matmul(h, self._single_b[module]))
        y = torch.bmm(h, self.stack.b[module])
        y = y.view(self.count * self.width, -1, y.shape[-1])
        if self.pos is not None:
            y = y.index_select(0, self.pos)
        return out.add_(y.view(out.shape))


class LoRABatch:
    """The adapters of the rows in the current forward pass (see the module docstring)."""

    def __init__(self) -> None:
        self.segments: _Segments | None = None
        """None when every row is ``base``."""
        self.slots = SlotStack()
        """Where a mixed batch's adapters are stacked (see :mod:`server.engine.lora_slots`)."""

    def set_adapters(self, keys: list[str | None], adapters: Mapping[str, LoRAStack], device: torch.device) -> None:
        """Point every batch row at its adapter (``keys[row]``, None: base); put the adapters of a
        mixed batch in slots."""
        distinct = sorted({key for key in keys if key is not None})
        if not distinct:
            self.segments = None
            return
        if len(distinct) == 1:
            # One adapter (every prefill, one-tenant batches): used as loaded, no copy.
            stack, slot_of = adapters[distinct[0]], {distinct[0]: 0}
        else:
            stack, slot_of = self.slots.place(distinct, adapters)
        segments: list[list[int]] = [[] for _ in range(stack.size)]
        for row, key in enumerate(keys):
            if key is not None:
                segments[slot_of[key]].append(row)
        self.segments = _Segments(stack, segments, len(keys), device)

    def clear(self) -> None:
        """Forget the stacked adapters (their memory goes back)."""
        self.segments = None
        self.slots.clear()


class BatchedLoRALinear(torch.nn.Module):
    """A base linear layer plus the batch's LoRA deltas (see the module docstring)."""

    def __init__(self, base_layer: torch.nn.Linear, name: str, batch: LoRABatch) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base_layer(x)
        segments = self.batch.segments
        if segments is None:
            return out
        return segments.expand_into(self.name, x, out)


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
