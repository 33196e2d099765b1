"""The shipped MiniLM as retrieval uses it: unit rows, meaning over wording, order kept across the
length-sorted batches, a deadline that stops a long job between batches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from adapters.text_embedder import TextEmbedder


@pytest.fixture(scope="module")
def embedder(embedding_model_dir: Path) -> TextEmbedder:
    return TextEmbedder.load(embedding_model_dir)


def test_rows_are_unit_vectors_and_a_paraphrase_is_closer_than_a_shared_word(embedder: TextEmbedder) -> None:
    rows = embedder.embed(
        [
            "Are pre-owned bikes available?",
            "Refurbished second-hand bicycles are sold every Saturday morning.",
            "Bikes can be hired for a day at the front desk.",
        ]
    )
    assert rows.shape == (3, embedder.dim) and embedder.dim == 384
    assert torch.allclose(rows.norm(dim=1), torch.ones(3), atol=1e-5)
    similar = rows[1:] @ rows[0]
    assert similar[0] > similar[1], similar  # the answer shares no word; the wrong one shares "bikes"


def test_order_is_kept_whatever_the_batching(embedder: TextEmbedder) -> None:
    texts = ["short", "a much longer text about opening hours on public holidays", "medium length text", "x"]
    together = embedder.embed(texts, batch=3)
    alone = torch.cat([embedder.embed([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-4)


def test_a_passed_deadline_stops_between_batches(embedder: TextEmbedder) -> None:
    with pytest.raises(TimeoutError, match="embedded 0 of 2"):
        embedder.embed(["one", "two"], batch=1, deadline=time.monotonic() - 1)
