"""Traffic splits: an adapter's unpinned requests spread over its versions by weight, sticky per conversation.

Contract:

- A :class:`TrafficSplit` is integer percentages over existing versions (at most
  :data:`MAX_VERSIONS`, each 0-100, summing to 100, at least one above 0); :meth:`TrafficSplit.parse`
  validates the API's ``{"3": 90, "4": 10}`` and raises :class:`ValueError` with a message fit for
  a 400.
- :meth:`TrafficSplit.choose` maps a conversation key to a version: the key and the adapter id are
  hashed (blake2b) into one of 10,000 buckets laid out by weight, so the same conversation lands on
  the same version on every request, every restart and every replica, and over many
  conversations the shares match the weights. Without a key a request draws a bucket at random.
- The store keeps a split next to ``current`` (``traffic.json``, written atomically by
  :meth:`adapters.store.AdapterStore.set_traffic`); a request reads it when it starts, so a change
  applies to the next request and never to one in flight. No split: ``current`` answers.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass

MAX_VERSIONS = 8
BUCKETS = 10_000


@dataclass(frozen=True)
class TrafficSplit:
    weights: tuple[tuple[int, int], ...]
    """(version, percent), versions ascending."""

    @classmethod
    def parse(cls, data: object) -> TrafficSplit:
        if not isinstance(data, Mapping) or not data:
            raise ValueError('traffic must be an object of version -> percent, e.g. {"3": 90, "4": 10}')
        if len(data) > MAX_VERSIONS:
            raise ValueError(f"traffic may split over at most {MAX_VERSIONS} versions")
        weights = []
        for key, value in data.items():
            if (
                not isinstance(key, str)
                or not key.isascii()
                or not key.isdigit()
                or key.startswith("0")
                or len(key) > 9
            ):
                raise ValueError(f"traffic keys are version numbers, not {str(key)[:20]!r}")
            if type(value) is not int or not 0 <= value <= 100:
                raise ValueError(f"the weight of version {key} must be an integer from 0 to 100")
            weights.append((int(key), value))
        if sum(w for _, w in weights) != 100:
            raise ValueError("traffic weights must sum to 100")
        return cls(tuple(sorted(weights)))

    @property
    def versions(self) -> list[int]:
        return [v for v, _ in self.weights]

    @property
    def only(self) -> int | None:
        """The version that takes all traffic, if one does (a promotion, not a split)."""
        full = [v for v, w in self.weights if w == 100]
        return full[0] if full else None

    def choose(self, adapter_id: str, key: str | None) -> int:
        """The version that answers conversation ``key`` of adapter ``adapter_id``."""
        if key is None:
            bucket = random.randrange(BUCKETS)
        else:
            digest = hashlib.blake2b(f"{adapter_id}\0{key}".encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest, "big") % BUCKETS
        edge = 0
        for version, weight in self.weights:
            edge += weight * BUCKETS // 100
            if bucket < edge:
                return version
        return self.weights[-1][0]

    def to_json(self) -> str:
        return json.dumps({"weights": {str(v): w for v, w in self.weights}})

    @classmethod
    def from_json(cls, text: str) -> TrafficSplit:
        return cls.parse(json.loads(text)["weights"])

    def to_api(self) -> dict[str, int]:
        return {str(v): w for v, w in self.weights}
