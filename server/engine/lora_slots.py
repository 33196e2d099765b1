"""The mixed batch's adapters in slots, so that adapters join and leave without a rebuild.

A :class:`SlotStack` keeps the adapters of recent multi-adapter batches in one
:class:`~server.engine.lora_stack.LoRAStack` with room for ``capacity`` adapters: per layer, stacked
tensors whose rows are *slots*. :meth:`SlotStack.place` puts a batch's set of adapters in slots and
returns a view over the first K slots (K = the highest slot the batch uses + 1; views, no copy):
what the batch's batched matmuls run over.

- An adapter that joins is copied into a slot: the lowest free slot, or one held by an adapter the
  batch no longer uses. That costs one adapter's bytes; the others stay where they are.
- The stack is rebuilt (its adapters copied into new tensors) only when no slot is left (the
  capacity then becomes the next power of two at or above the batch's count), when a joining adapter
  has a rank or target module the stack's layout has no room for (the layout widens), or when more
  than half of the first K slots would sit idle (it compacts).

Filling a batch with N distinct adapters therefore copies O(N) adapters, where a rebuild per join
copied O(N^2): about 1,100 adapter copies for 64 rows joining two at a time. Slots a batch does not
use inside its first K compute rows nobody reads; the view never reaches past K.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.engine.lora_stack import LoRAStack, concat, covers, put


class SlotStack:
    """See the module docstring."""

    def __init__(self) -> None:
        self._keys: list[str | None] = []
        """slot -> the adapter in it (None: never filled)."""
        self._storage: LoRAStack | None = None
        self._views: dict[int, LoRAStack] = {}
        self.rebuilds = 0
        """How often every adapter was copied into new tensors (tests, diagnostics)."""

    @property
    def capacity(self) -> int:
        return len(self._keys)

    def place(self, wanted: Sequence[str], adapters: Mapping[str, LoRAStack]) -> tuple[LoRAStack, dict[str, int]]:
        """Slots for every adapter in ``wanted`` (loaded, in ``adapters``); returns the view over
        the first K slots and each wanted adapter's slot."""
        slot_of = {key: slot for slot, key in enumerate(self._keys) if key is not None}
        missing = [key for key in wanted if key not in slot_of]
        needed = set(wanted)
        reusable = [slot for slot, key in enumerate(self._keys) if key is None or key not in needed]
        storage = self._storage
        if storage is None or len(missing) > len(reusable) or not all(covers(storage, adapters[k]) for k in missing):
            return self._rebuild(wanted, adapters)
        for key, slot in zip(missing, reusable):
            put(storage, slot, adapters[key])
            old = self._keys[slot]
            if old is not None:
                del slot_of[old]
            self._keys[slot] = key
            slot_of[key] = slot
        used = max(slot_of[key] for key in wanted) + 1
        if used > 2 * len(wanted):
            return self._rebuild(wanted, adapters)
        return self._view(used), {key: slot_of[key] for key in wanted}

    def clear(self) -> None:
        """Give the memory back."""
        self._keys, self._storage, self._views = [], None, {}

    def _rebuild(self, wanted: Sequence[str], adapters: Mapping[str, LoRAStack]) -> tuple[LoRAStack, dict[str, int]]:
        self.clear()
        capacity = 1 << (len(wanted) - 1).bit_length()  # the next power of two at or above the count
        self._storage = concat([adapters[key] for key in wanted], capacity=capacity)
        self._keys = [*wanted, *([None] * (capacity - len(wanted)))]
        self.rebuilds += 1
        return self._view(len(wanted)), {key: slot for slot, key in enumerate(wanted)}

    def _view(self, used: int) -> LoRAStack:
        view = self._views.get(used)
        if view is None:
            storage = self._storage
            assert storage is not None
            view = LoRAStack(
                used,
                {group: t[:used] for group, t in storage.a.items()},
                {module: t[:used] for module, t in storage.b.items()},
                storage.layouts,
                storage.members,
            )
            self._views[used] = view
        return view
