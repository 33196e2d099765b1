"""Which adapters are resident next to the base, budgeted in bytes, least-recently-used first out.

Owned by the engine's worker thread. An adapter is keyed by its immutable ``tenant/name@version``,
so a newly published version is simply a new key and requests in flight keep the version they
began with. Adapters of rows in the running batch are pinned and never evicted; the budget may be
exceeded only while pins require it. Resident adapters are :class:`~server.lora_stack.LoRAStack`
(ready tensors on the model's device), so a batch can stack them without touching the disk.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.lora_stack import LoRAStack


@dataclass(frozen=True)
class AdapterHandle:
    """What a request carries: the adapter's immutable key and where its files are."""

    key: str
    """``tenant/name@version``."""
    path: Path


class AdapterLoadError(RuntimeError):
    """The adapter's files could not be loaded."""


class AdapterCache:
    """LRU set of resident adapters with pins and a byte budget; see the module docstring."""

    def __init__(
        self,
        loader: Callable[[Path], LoRAStack],
        budget_bytes: int,
        on_load: Callable[[float], None] | None = None,
        on_hit: Callable[[], None] | None = None,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._loader = loader
        self.budget_bytes = budget_bytes
        self.weights: OrderedDict[str, LoRAStack] = OrderedDict()
        self._pins: dict[str, int] = {}
        self._on_load = on_load or (lambda seconds: None)
        self._on_hit = on_hit or (lambda: None)
        self._on_evict = on_evict or (lambda: None)

    @property
    def loaded_keys(self) -> list[str]:
        return list(self.weights)

    @property
    def resident_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    def acquire(self, handle: AdapterHandle | None) -> str | None:
        """Make ``handle`` resident and pin it; return its key (None for ``base``)."""
        if handle is None:
            return None
        if handle.key not in self.weights:
            started = time.perf_counter()
            try:
                weights = self._loader(handle.path)
            except Exception as exc:  # torch/safetensors raise many types for bad files
                raise AdapterLoadError(f"Could not load adapter {handle.key}: {exc}") from exc
            self.weights[handle.key] = weights
            self._on_load(time.perf_counter() - started)
        else:
            self._on_hit()
        self.weights.move_to_end(handle.key)
        self._pins[handle.key] = self._pins.get(handle.key, 0) + 1
        self._evict_over_budget()
        return handle.key

    def release(self, handle: AdapterHandle | None) -> None:
        """Unpin ``handle`` (its row left the batch)."""
        if handle is None:
            return
        left = self._pins.get(handle.key, 0) - 1
        if left > 0:
            self._pins[handle.key] = left
        else:
            self._pins.pop(handle.key, None)
        self._evict_over_budget()

    def _evict_over_budget(self) -> None:
        total = self.resident_bytes
        for key in list(self.weights):
            if total <= self.budget_bytes:
                return
            if self._pins.get(key):
                continue
            total -= self.weights.pop(key).nbytes
            self._on_evict()
