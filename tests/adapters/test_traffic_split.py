"""Traffic splits: validation, shares by weight, stickiness, and how the store keeps them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from adapters.ids import AdapterRef
from adapters.store import AdapterNotFound, AdapterStore
from adapters.traffic_split import TrafficSplit
from tests.adapters.helpers import publish


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"1": 90},
        {"1": 90, "2": 20},
        {"0": 100},
        {"01": 100},
        {"x": 100},
        {"1": 100.0},
        {"1": True},
        {"1": -10, "2": 110},
        {str(v): 0 for v in range(1, 9)} | {"9": 100},
        [["1", 100]],
        None,
    ],
)
def test_malformed_splits_are_refused(data: object) -> None:
    with pytest.raises(ValueError):
        TrafficSplit.parse(data)


def test_shares_follow_the_weights_and_conversations_stick() -> None:
    split = TrafficSplit.parse({"3": 90, "4": 10})
    picks = [split.choose("acme/support", f"conversation-{i}") for i in range(20_000)]
    shares = Counter(picks)
    assert abs(shares[3] / len(picks) - 0.9) < 0.01
    assert all(split.choose("acme/support", f"conversation-{i}") == picks[i] for i in range(500))
    other = [split.choose("acme/other", f"conversation-{i}") for i in range(500)]
    assert other != picks[:500]  # the adapter is part of the key: canaries of two adapters are independent
    zero = TrafficSplit.parse({"1": 0, "2": 100})
    assert {zero.choose("a/b", str(i)) for i in range(200)} == {2}
    assert TrafficSplit.from_json(split.to_json()) == split and split.to_api() == {"3": 90, "4": 10}


def test_the_store_keeps_splits_next_to_current(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    for _ in range(3):
        publish(store)
    ref = AdapterRef("acme", "support", None)
    assert store.traffic("acme", "support") is None and store.resolve(ref).manifest.version == 3
    store.set_traffic("acme", "support", TrafficSplit.parse({"1": 50, "2": 50}))
    versions = {store.resolve(ref, f"c{i}").manifest.version for i in range(50)}
    assert versions == {1, 2}
    assert store.resolve(AdapterRef("acme", "support", 3), "c1").manifest.version == 3  # pinned
    with pytest.raises(AdapterNotFound):
        store.set_traffic("acme", "support", TrafficSplit.parse({"1": 50, "7": 50}))
    assert store.traffic("acme", "support") == TrafficSplit.parse({"1": 50, "2": 50})  # unchanged
    store.set_traffic("acme", "support", TrafficSplit.parse({"2": 100}))  # promotion
    assert store.current_version("acme", "support") == 2 and store.traffic("acme", "support") is None
    store.set_traffic("acme", "support", TrafficSplit.parse({"1": 50, "2": 50}))
    store.rollback("acme", "support", 3)
    assert store.traffic("acme", "support") is None
    store.set_traffic("acme", "support", TrafficSplit.parse({"1": 50, "3": 50}))
    store.delete("acme", "support", 1)
    assert store.traffic("acme", "support") is None and store.current_version("acme", "support") == 3
