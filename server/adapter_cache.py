"""Which adapters are loaded next to the base, least-recently-used first out.

Owned by the engine's worker thread (PEFT mutates the model when it loads or deletes an
adapter, so only the thread that runs forward passes may do it). An adapter is keyed by its
immutable ``tenant/name@version``, so a newly published version is simply a new key and
requests in flight keep the version they began with. Adapters used by rows in the running batch
are pinned and never evicted.

This first version holds PEFT adapters and lets PEFT's ``adapter_names`` mixed batch apply them;
the slot-stacked batched kernel replaces it without changing this interface.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

BASE_ROW = "__base__"
"""PEFT's name for a row that uses no adapter."""


@dataclass(frozen=True)
class AdapterHandle:
    """What a request carries: the adapter's immutable key and where its files are."""

    key: str
    """``tenant/name@version``."""
    path: Path


class AdapterLoadError(RuntimeError):
    """The adapter's files could not be loaded onto the base."""


def peft_name(key: str) -> str:
    """PEFT adapter names become module keys and may not contain '.', '/' or '@'."""
    return "a" + hashlib.sha256(key.encode()).hexdigest()[:16]


class AdapterCache:
    """LRU set of loaded adapters with pins; see the module docstring."""

    def __init__(
        self,
        base: torch.nn.Module,
        capacity: int,
        on_load: Callable[[float], None] | None = None,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._base = base
        self._peft = None  # a PeftModel once the first adapter loads
        self.capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()  # key -> peft name
        self._pins: dict[str, int] = {}
        self._on_load = on_load or (lambda seconds: None)
        self._on_evict = on_evict or (lambda: None)

    @property
    def model(self) -> torch.nn.Module:
        """The module to run forward passes on."""
        return self._peft if self._peft is not None else self._base

    @property
    def loaded_keys(self) -> list[str]:
        return list(self._loaded)

    def acquire(self, handle: AdapterHandle | None) -> str:
        """Load ``handle`` if needed, pin it, and return the row name for ``adapter_names``."""
        if handle is None:
            return BASE_ROW
        name = self._loaded.get(handle.key)
        if name is None:
            name = self._load(handle)
        self._loaded.move_to_end(handle.key)
        self._pins[handle.key] = self._pins.get(handle.key, 0) + 1
        return name

    def release(self, handle: AdapterHandle | None) -> None:
        """Unpin ``handle`` (its row left the batch)."""
        if handle is None:
            return
        left = self._pins.get(handle.key, 0) - 1
        if left > 0:
            self._pins[handle.key] = left
        else:
            self._pins.pop(handle.key, None)

    def _load(self, handle: AdapterHandle) -> str:
        from peft import PeftModel

        name = peft_name(handle.key)
        started = time.perf_counter()
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(
                    self._base, str(handle.path), adapter_name=name, is_trainable=False
                )
                self._peft.eval()
            else:
                self._peft.load_adapter(str(handle.path), adapter_name=name, is_trainable=False)
        except Exception as exc:  # PEFT raises many types for bad files
            raise AdapterLoadError(f"Could not load adapter {handle.key}: {exc}") from exc
        self._loaded[handle.key] = name
        self._on_load(time.perf_counter() - started)
        self._evict_over_capacity(keep=handle.key)
        return name

    def _evict_over_capacity(self, keep: str) -> None:
        # Pinned adapters and the one just loaded stay, so PEFT never holds zero adapters.
        for key in list(self._loaded):
            if len(self._loaded) <= self.capacity:
                return
            if key == keep or self._pins.get(key):
                continue
            self._peft.delete_adapter(self._loaded.pop(key))
            self._on_evict()
