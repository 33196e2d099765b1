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


MULTILINGUAL = (
    "Line {i}: the shop opens at 9:00 — Ça coûte 12 €, très cher! Ünïcödé straße. Привет, мир. "
    "日本語のテキストです。中文也可以。 مرحبا بالعالم. 한국어 문장. Emoji 🙂🚲👨‍👩‍👧‍👦🇫🇷 and ½ ≠ ∞.\n"
)


class CountingTokenizer:
    """The real tokenizer, recording how many ids each ``decode`` call got."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls: list[int] = []

    def decode(self, ids, **kwargs) -> str:
        self.calls.append(len(ids))
        return self.tokenizer.decode(ids, **kwargs)


def long_ids(tokenizer, tokens: int) -> list[int]:
    ids: list[int] = []
    i = 0
    while len(ids) < tokens:
        ids += tokenizer(MULTILINGUAL.format(i=i), add_special_tokens=False).input_ids
        i += 1
    return ids[:tokens]


def test_pieces_of_a_long_multilingual_answer_are_the_decoded_whole(tokenizer) -> None:
    ids = long_ids(tokenizer, 3000)
    inc = IncrementalText(tokenizer)
    pieces = [inc.push(token) for token in ids] + [inc.flush()]
    whole = tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")  # the cut may split a character
    assert "".join(pieces) == whole and len(whole) > 3000
    assert all("\ufffd" not in p for p in pieces)
    with_specials = ids[:50] + [tokenizer.eos_token_id] + ids[50:400]
    inc = IncrementalText(tokenizer)
    pieces = [inc.push(token) for token in with_specials] + [inc.flush()]
    assert "".join(pieces) == tokenizer.decode(with_specials, skip_special_tokens=True).rstrip("\ufffd")


def test_a_stop_string_late_in_a_long_answer_still_cuts(tokenizer) -> None:
    ids = long_ids(tokenizer, 1500)
    whole = tokenizer.decode(ids, skip_special_tokens=True)
    stop = "Line 9: the shop"  # about 1300 tokens in
    inc = IncrementalText(tokenizer, ("never there", stop))
    pieces = []
    for token in ids:
        pieces.append(inc.push(token))
        if inc.stopped:
            break
    assert inc.stopped and inc.push(ids[0]) == "" and inc.flush() == ""
    assert "".join(pieces) == whole[: whole.index(stop)]


def test_the_work_per_token_does_not_grow_with_the_answer(tokenizer) -> None:
    def ids_decoded_per_token(tokens: int) -> list[int]:
        counting = CountingTokenizer(tokenizer)
        inc = IncrementalText(counting, ("END OF",))
        per_token = []
        for token in long_ids(tokenizer, tokens):
            before = len(counting.calls)
            inc.push(token)
            per_token.append(sum(counting.calls[before:]))
        return per_token

    short, long = ids_decoded_per_token(100), ids_decoded_per_token(2000)
    assert max(long) == max(short) <= 16  # two decodes of the last token or few (a character may span several)
    assert sum(long) <= 2000 * sum(short) / 100 * 1.2  # linear in the answer, not quadratic
