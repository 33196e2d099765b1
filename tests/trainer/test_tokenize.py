"""Assistant-only labels with SmolLM2's real ChatML template and tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base_model import load_tokenizer
from adapters.chat_format import conversation, render
from trainer.tokenize import IGNORE_INDEX, TokenizeError, encode


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path):
    return load_tokenizer(embedded_model_dir)


def labelled_text(tokenizer, sample) -> list[str]:
    """The decoded runs of labelled tokens."""
    runs, current = [], []
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                runs.append(tokenizer.decode(current))
                current = []
        else:
            assert label == token
            current.append(token)
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_only_assistant_turns_and_their_end_token_are_trained(tokenizer) -> None:
    messages = conversation(
        [
            {"role": "user", "content": "When do you open?"},
            {"role": "assistant", "content": "At 9:30, Tuesday to Saturday."},
            {"role": "user", "content": "And on Mondays?"},
            {"role": "assistant", "content": "We are closed on Mondays."},
        ],
        "You answer for Lumen Lane Bicycles.",
    )
    sample = encode(tokenizer, messages)
    assert labelled_text(tokenizer, sample) == [
        "At 9:30, Tuesday to Saturday.<|im_end|>",
        "We are closed on Mondays.<|im_end|>",
    ]
    # The ids are exactly what the server tokenizes for the same conversation.
    text = render(tokenizer, messages, add_generation_prompt=False)
    assert sample.input_ids == tokenizer(text, add_special_tokens=False).input_ids
    assert sample.trained_tokens == sum(1 for label in sample.labels if label != IGNORE_INDEX)


def test_template_default_system_prompt_is_not_trained(tokenizer) -> None:
    sample = encode(tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    assert "SmolLM" in tokenizer.decode(sample.input_ids)  # the template's own system prompt
    assert labelled_text(tokenizer, sample) == ["Hello!<|im_end|>"]


def test_a_sample_without_an_answer_is_refused(tokenizer) -> None:
    with pytest.raises(TokenizeError):
        encode(tokenizer, [{"role": "user", "content": "Hi"}])
