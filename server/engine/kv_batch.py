"""The running batch's key/value cache, left-padded so rows of any length decode together.

Rows join after their own prefill (their cache is padded on the left to the batch's length and
concatenated) and leave at any step (their rows are dropped; columns that became padding for
every row are trimmed). ``attention_mask`` marks real tokens; ``position_ids`` are each row's own
positions, so RoPE sees no gaps. Pure torch: no threads, no HTTP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import CacheLayerMixin


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's keys and values (filled: the cache has been through a prefill)."""
    pairs = []
    for layer in cache.layers:
        assert isinstance(layer, CacheLayerMixin) and layer.keys is not None and layer.values is not None
        pairs.append((layer.keys, layer.values))
    return pairs


def _pad_left(tensor: torch.Tensor, extra: int, dim: int) -> torch.Tensor:
    if extra == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - dim - 1) + [extra, 0]
    return F.pad(tensor, pad)


class KVBatch:
    """Cache, attention mask and per-row lengths of the rows being decoded."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, columns], 1 = real token

    @property
    def size(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def _state(self) -> tuple[DynamicCache, torch.Tensor]:
        """The cache and the mask of a batch with rows (they are None together)."""
        assert self.cache is not None and self.mask is not None, "the batch has no rows"
        return self.cache, self.mask

    def append_row(self, cache: DynamicCache, length: int) -> None:
        """Add a freshly prefilled single-row cache of ``length`` tokens."""
        new = _layers(cache)
        row_mask = torch.ones((1, length), dtype=torch.long, device=new[0][0].device)
        if self.cache is None:
            self.cache, self.mask = cache, row_mask
            return
        old_cache, old_mask = self._state()
        width = max(old_mask.shape[1], length)
        old = _layers(old_cache)
        merged = [
            (
                torch.cat([_pad_left(ok, width - old_mask.shape[1], 2), _pad_left(nk, width - length, 2)]),
                torch.cat([_pad_left(ov, width - old_mask.shape[1], 2), _pad_left(nv, width - length, 2)]),
            )
            for (ok, ov), (nk, nv) in zip(old, new)
        ]
        self.mask = torch.cat(
            [_pad_left(old_mask, width - old_mask.shape[1], 1), _pad_left(row_mask, width - length, 1)]
        )
        self.cache = DynamicCache(ddp_cache_data=merged)

    def keep_rows(self, keep: list[int]) -> None:
        """Keep only the rows at these indices (in this order)."""
        if not keep:
            self.cache, self.mask = None, None
            return
        if len(keep) == self.size:
            return
        old_cache, old_mask = self._state()
        index = torch.tensor(keep, dtype=torch.long, device=old_mask.device)
        mask = old_mask.index_select(0, index)
        # Columns that are padding for every remaining row are dead weight in attention.
        first = int(mask.any(dim=0).long().argmax())
        self.mask = mask[:, first:]
        self.cache = DynamicCache(
            ddp_cache_data=[
                (k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
                for k, v in _layers(old_cache)
            ]
        )

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask and position ids for one more token per row; extends the mask."""
        _, old_mask = self._state()
        positions = old_mask.sum(dim=1, keepdim=True)
        self.mask = torch.cat([old_mask, torch.ones_like(positions)], dim=1)
        return self.mask, positions
