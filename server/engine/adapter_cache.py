"""Which adapters are ready next to the base: a device tier and a host tier, each budgeted in bytes.

Owned by the engine's worker thread. An adapter is keyed by its immutable ``tenant/name@version``,
so a newly published version is simply a new key and requests in flight keep the version they
began with. Tiers, fastest first:

- **device**: loaded adapters (:class:`~server.engine.lora_stack.LoRAStack`) on the model's device, what a
  batch stacks from. Adapters of rows in the running batch are pinned and never evicted; the
  budget may be exceeded only while pins require it. Least recently used goes first.
- **host**: adapters evicted from the device keep their ready tensors in host memory (moved off
  the accelerator; on a CPU-only server the same tensors, kept under the host budget), so coming
  back costs a copy, not a file read. Least recently used beyond the host budget is dropped.
- **disk**: the adapter store; a miss reads safetensors straight into a loaded adapter.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from server.engine.lora_stack import LoRAStack


@dataclass(frozen=True)
class AdapterHandle:
    """What a request carries: the adapter's immutable key and where its files are."""

    key: str
    """``tenant/name@version``."""
    path: Path


class AdapterLoadError(RuntimeError):
    """The adapter's files could not be loaded."""


@dataclass
class CacheEvents:
    """Callbacks for metrics; each defaults to doing nothing."""

    on_load: Callable[[float], None] = lambda seconds: None
    """A miss was read from disk in ``seconds``."""
    on_hit: Callable[[], None] = lambda: None
    on_host_hit: Callable[[], None] = lambda: None
    on_evict: Callable[[], None] = lambda: None
    """An adapter left the device tier."""


class AdapterCache:
    """Two LRU tiers with pins and byte budgets; see the module docstring."""

    def __init__(
        self,
        loader: Callable[[Path], LoRAStack],
        budget_bytes: int,
        host_budget_bytes: int = 0,
        device: torch.device | None = None,
        events: CacheEvents | None = None,
    ) -> None:
        self._loader = loader
        self.budget_bytes = budget_bytes
        self.host_budget_bytes = host_budget_bytes
        self._device = device or torch.device("cpu")
        self.weights: OrderedDict[str, LoRAStack] = OrderedDict()
        """The device tier, least recently used first."""
        self.host: OrderedDict[str, LoRAStack] = OrderedDict()
        """The host tier, least recently used first."""
        self._pins: dict[str, int] = {}
        self.events = events or CacheEvents()

    @property
    def loaded_keys(self) -> list[str]:
        return list(self.weights)

    @property
    def resident_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    @property
    def host_bytes(self) -> int:
        return sum(w.nbytes for w in self.host.values())

    def acquire(self, handle: AdapterHandle | None) -> str | None:
        """Make ``handle`` ready on the device and pin it; return its key (None for ``base``)."""
        if handle is None:
            return None
        key = handle.key
        if key in self.weights:
            self.events.on_hit()
        elif key in self.host:
            self.weights[key] = self.host.pop(key).to(self._device)
            self.events.on_host_hit()
        else:
            started = time.perf_counter()
            try:
                self.weights[key] = self._loader(handle.path)
            except Exception as exc:  # torch/safetensors raise many types for bad files
                raise AdapterLoadError(f"Could not load adapter {key}: {exc}") from exc
            self.events.on_load(time.perf_counter() - started)
        self.weights.move_to_end(key)
        self._pins[key] = self._pins.get(key, 0) + 1
        self._evict_over_budget()
        return key

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
                break
            if self._pins.get(key):
                continue
            stack = self.weights.pop(key)
            total -= stack.nbytes
            self.events.on_evict()
            if stack.nbytes <= self.host_budget_bytes:
                self.host[key] = stack.to(torch.device("cpu"))
        host_total = self.host_bytes
        while host_total > self.host_budget_bytes and self.host:
            _, dropped = self.host.popitem(last=False)
            host_total -= dropped.nbytes
