"""Incremental text: stop strings across token boundaries, held-back prefixes, UTF-8 pieces."""

from __future__ import annotations

import pytest

from adapters.base_model import load_tokenizer
from server.engine.detokenizer import IncrementalText


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def feed(tokenizer, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], IncrementalText]:
    inc = IncrementalText(tokenizer, stop)
    pieces = []
    for token in tokenizer(text, add_special_tokens=False).input_ids:
        pieces.append(inc.push(token))
        if inc.stopped:
            break
    pieces.append(inc.flush())
    return pieces, inc


def test_pieces_concatenate_to_the_text(tokenizer) -> None:
    text = "Hello, world! Ünïcödé and emoji 🙂 survive."
    pieces, inc = feed(tokenizer, text)
    assert "".join(pieces) == text and not inc.stopped
    assert all("\ufffd" not in p for p in pieces)


def test_stop_string_spanning_tokens_is_cut_and_never_shown(tokenizer) -> None:
    pieces, inc = feed(tokenizer, "The answer is 42. END OF ANSWER and more", stop=("END OF",))
    assert inc.stopped
    assert "".join(pieces) == "The answer is 42. "
    assert not any("END" in p for p in pieces)


def test_text_that_only_looks_like_a_stop_prefix_is_released(tokenizer) -> None:
    pieces, inc = feed(tokenizer, "an ENDless road", stop=("END OF",))
    assert not inc.stopped and "".join(pieces) == "an ENDless road"


def test_earliest_of_several_stops_wins(tokenizer) -> None:
    pieces, _ = feed(tokenizer, "alpha beta gamma", stop=("gamma", "beta"))
    assert "".join(pieces) == "alpha "
