"""Adapters in the form the batched LoRA layers compute with: per-input-group stacks of A and B.

A :class:`LoRAStack` holds G adapters (G = :attr:`LoRAStack.size`), one per *slot*. Modules that read the same
input tensor form an *input group* (``q_proj``/``k_proj``/``v_proj`` and ``gate_proj``/``up_proj``
of a decoder layer; any other module is a group of its own). Per group the stack keeps one
``A [G, in, S]``: the members' ``A^T`` side by side along S, so one batched matmul computes every
member's rank-space activations. Per module it keeps ``B^T * scale [G, R, out]`` (the scale
``alpha / r``, or ``alpha / sqrt(r)`` for rsLoRA, folded in at load time). The *shrink*
``x @ A`` maps activations to rank space, the *expand* ``h @ B`` maps them back (Punica's
words); :class:`Member` says where a module's block sits along S.

:func:`load_lora` reads a validated PEFT directory straight into a stack of one, in the serving
dtype and on the serving device: a *loaded adapter*, what the adapter cache keeps.
:func:`concat` joins stacks along G for a batch of several adapters; where the adapters' ranks or
targeted modules differ, the missing blocks are zeros (a zero block adds nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file

from adapters.store import CONFIG_FILE, WEIGHTS_FILE
from adapters.validation import KEY_PREFIX, READ_BACKEND, lora_scaling

SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Sibling linear layers that read the same input tensor (Llama, Mistral, Qwen, Gemma)."""

Layout = tuple[tuple[str, int], ...]
"""A group's members in order with their rank (their width along S)."""


class Member(NamedTuple):
    """Where one module's LoRA sits in its input group's ``A``."""

    group: str
    """The input group."""
    place: int
    """The module's place among the group's members (its piece of the shrink's output)."""
    start: int
    """First column of its block along S."""
    stop: int
    """One past its last column along S."""

    @property
    def width(self) -> int:
        return self.stop - self.start


def input_group(module: str) -> tuple[str, int]:
    """The input group of ``module`` and the module's place in it."""
    parent, _, child = module.rpartition(".")
    for siblings in SHARED_INPUT:
        if child in siblings:
            name = "|".join(siblings)
            return (f"{parent}.{name}" if parent else name), siblings.index(child)
    return module, 0


@dataclass(frozen=True)
class LoRAStack:
    """G adapters ready for batched matmuls; see the module docstring."""

    size: int
    """G: how many adapters are stacked."""
    a: dict[str, torch.Tensor]
    """input group -> ``[G, in, S]``."""
    b: dict[str, torch.Tensor]
    """module -> ``B^T * scale``, ``[G, R, out]``."""
    layouts: dict[str, Layout]
    """input group -> its members and their widths along S."""
    members: dict[str, Member]
    """module -> where its block sits in its input group's ``A``."""

    @cached_property
    def widths(self) -> dict[str, list[int]]:
        """input group -> its members' widths along S (to split a group's activations at once)."""
        return {group: [width for _, width in layout] for group, layout in self.layouts.items()}

    @cached_property
    def single(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """For a stack of one: ``A [in, S]`` per group and ``B [R, out]`` per module (2-D views)."""
        return {g: t[0] for g, t in self.a.items()}, {m: t[0] for m, t in self.b.items()}

    @property
    def nbytes(self) -> int:
        tensors = [*self.a.values(), *self.b.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device) -> LoRAStack:
        """The same stack on ``device`` (itself when already there)."""
        first = next(iter(self.a.values()), None)
        if first is None or first.device == device:
            return self
        move = {"a": self.a, "b": self.b}
        moved = {k: {name: t.to(device, non_blocking=True) for name, t in v.items()} for k, v in move.items()}
        return LoRAStack(self.size, moved["a"], moved["b"], self.layouts, self.members)


def _members(layouts: dict[str, Layout]) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for group, layout in layouts.items():
        start = 0
        for place, (module, width) in enumerate(layout):
            members[module] = Member(group, place, start, start + width)
            start += width
    return members


def load_lora(path: Path, dtype: torch.dtype, device: torch.device) -> LoRAStack:
    """Read a validated PEFT LoRA directory (safetensors only) into a stack of one."""
    config = json.loads((path / CONFIG_FILE).read_text())
    scale = lora_scaling(float(config["lora_alpha"]), int(config["r"]), bool(config.get("use_rslora")))
    # Read on the host (the pread reader, see READ_BACKEND), moved to the serving device as they
    # are; the dtype conversion and transposes happen there, in the copies below.
    tensors = load_file(str(path / WEIGHTS_FILE), device="cpu", backend=READ_BACKEND)
    if device.type != "cpu":
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    grouped: dict[str, list[tuple[int, str]]] = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            module = key[len(KEY_PREFIX) : -len(".lora_A.weight")]
            group, place = input_group(module)
            grouped.setdefault(group, []).append((place, module))
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    layouts: dict[str, Layout] = {}
    for group, found in grouped.items():
        modules = [module for _, module in sorted(found)]
        weights_a = [tensors[f"{KEY_PREFIX}{m}.lora_A.weight"] for m in modules]
        layouts[group] = tuple((m, int(w.shape[0])) for m, w in zip(modules, weights_a))
        width = sum(int(w.shape[0]) for w in weights_a)
        a[group] = torch.empty((1, weights_a[0].shape[1], width), dtype=dtype, device=device)
        start = 0
        for w in weights_a:
            a[group][0, :, start : start + w.shape[0]].copy_(w.t())
            start += w.shape[0]
        for module in modules:
            weight_b = tensors[f"{KEY_PREFIX}{module}.lora_B.weight"]
            b[module] = torch.empty((1, weight_b.shape[1], weight_b.shape[0]), dtype=dtype, device=device)
            b[module][0].copy_(weight_b.t()).mul_(scale)
    return LoRAStack(1, a, b, layouts, _members(layouts))


def concat(parts: Sequence[LoRAStack], capacity: int | None = None) -> LoRAStack:
    """Stack several loaded adapters along G, one slot each (a new copy; ``parts[0]`` alone is
    returned as is). With ``capacity``, the tensors have room for that many slots; the slots after
    the parts are left unwritten (see :func:`put`)."""
    size = sum(p.size for p in parts)
    if capacity is None and len(parts) == 1:
        return parts[0]
    capacity = max(size, capacity or 0)
    groups = list(dict.fromkeys(g for p in parts for g in p.layouts))
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    layouts: dict[str, Layout] = {}
    for group in groups:
        found = [p.layouts.get(group) for p in parts]
        first = found[0]
        if first is not None and all(layout == first for layout in found):  # the common case: whole blocks copied
            layouts[group] = first
            a[group] = _stacked([p.a[group] for p in parts], capacity)
            for module, _ in first:
                b[module] = _stacked([p.b[module] for p in parts], capacity)
            continue
        layouts[group] = _union_layout([layout for layout in found if layout])
        _fill_padded(group, layouts[group], parts, capacity, a, b)
    return LoRAStack(capacity, a, b, layouts, _members(layouts))


def _stacked(blocks: list[torch.Tensor], capacity: int) -> torch.Tensor:
    out = blocks[0].new_empty((capacity, *blocks[0].shape[1:]))
    torch.cat(blocks, out=out[: sum(t.shape[0] for t in blocks)])
    return out


def covers(stack: LoRAStack, part: LoRAStack) -> bool:
    """Whether every block of ``part`` has a place of at least its width in ``stack``'s layout."""
    for module, member in part.members.items():
        held = stack.members.get(module)
        if held is None or held.group != member.group or held.width < member.width:
            return False
    return True


def put(stack: LoRAStack, slot: int, part: LoRAStack) -> None:
    """Copy the one adapter ``part`` into slot ``slot`` of ``stack`` (which must :func:`covers` it);
    blocks ``part`` lacks, or rank columns beyond its own, become zeros."""
    for group, layout in stack.layouts.items():
        if part.layouts.get(group) == layout:
            stack.a[group][slot].copy_(part.a[group][0])
            for module, _ in layout:
                stack.b[module][slot].copy_(part.b[module][0])
            continue
        stack.a[group][slot].zero_()
        for module, _ in layout:
            stack.b[module][slot].zero_()
        _copy_blocks(group, stack.members, stack.a, stack.b, slice(slot, slot + 1), part)


def _copy_blocks(
    group: str,
    offsets: dict[str, Member],
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    slots: slice,
    part: LoRAStack,
) -> None:
    """``part``'s blocks of ``group`` into ``slots`` of the stacked ``a`` and ``b``, each at its
    module's place along S in the stack's layout (``offsets``)."""
    for module, member in part.members.items():
        if member.group != group:
            continue
        begin = offsets[module].start
        a[group][slots, :, begin : begin + member.width] = part.a[group][:, :, member.start : member.stop]
        b[module][slots, : member.width] = part.b[module]


def _union_layout(layouts: list[Layout]) -> Layout:
    widths: dict[str, int] = {}
    for layout in layouts:
        for module, width in layout:
            widths[module] = max(widths.get(module, 0), width)
    return tuple(sorted(widths.items(), key=lambda item: input_group(item[0])[1]))


def _fill_padded(
    group: str,
    layout: Layout,
    parts: Sequence[LoRAStack],
    size: int,
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
) -> None:
    """Stack one group whose parts differ in ranks or members: zeros, then each part's blocks."""
    sample = next(p for p in parts if group in p.a)
    template = sample.a[group]
    offsets = _members({group: layout})
    a[group] = template.new_zeros((size, template.shape[1], sum(w for _, w in layout)))
    for module, width in layout:
        out = next(p.b[module].shape[2] for p in parts if module in p.b)
        b[module] = template.new_zeros((size, width, out))
    slot = 0
    for part in parts:
        _copy_blocks(group, offsets, a, b, slice(slot, slot + part.size), part)
        slot += part.size
