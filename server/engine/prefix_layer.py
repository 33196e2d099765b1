"""A cache layer that starts from prefix-cache blocks and copies them once, on its first update.

Contract: :class:`PrefixLayer` is a transformers ``DynamicLayer`` holding one layer's cached
positions as a list of block pieces (``[1, kv_heads, n, head_dim]`` views into the prefix cache's
blocks, in prompt order). Until its first :meth:`~PrefixLayer.update` it reports their total
length (so masks and positions count them) and holds no tensor of its own; the first update
concatenates the pieces and the new positions in one copy, after which it is a plain dynamic
layer. The pieces are only read, never written: the prefix cache's blocks stay as they were.

Why: a plain ``DynamicCache`` built from cached blocks copies them twice before attention sees
them (assembling the prefix, then appending the new positions), and a long shared prefix (a
tenant's passages) is most of a request's keys and values: on the 2-core CPU the assembly alone
cost ~9 ms of a grounded request's ~140 ms to first token (bench/grounding_bench.py).
:func:`prefix_cache` builds a ``DynamicCache`` of these layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Pieces = Sequence[torch.Tensor]


class PrefixLayer(DynamicLayer):
    def __init__(self, keys: Pieces, values: Pieces) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._pending: tuple[list[torch.Tensor], list[torch.Tensor]] | None = (list(keys), list(values))
        self._pending_length = sum(piece.shape[-2] for piece in keys)
        first = keys[0]
        self.device = first.device
        self.keys = first.new_empty((first.shape[0], first.shape[1], 0, first.shape[3]))
        self.values = self.keys
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pending is None:
            return super().update(key_states, value_states, *args, **kwargs)
        keys, values = self._pending
        self._pending = None
        self.keys = torch.cat([*keys, key_states], dim=-2)
        self.values = torch.cat([*values, value_states], dim=-2)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._pending_length if self._pending is not None else super().get_seq_length()


def prefix_cache(layers: Sequence[tuple[Pieces, Pieces]]) -> DynamicCache:
    """A batch-1 ``DynamicCache`` of :class:`PrefixLayer`, one per ``(key pieces, value pieces)``."""
    cache = DynamicCache()
    cache.layers.extend(PrefixLayer(keys, values) for keys, values in layers)
    return cache
