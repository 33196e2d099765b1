"""Chat samples -> token ids with loss labels on the assistant's tokens only.

:func:`encode` renders a conversation with :func:`adapters.chat_format.render` (the base model's
own chat template, exactly as the server renders a prompt) and tokenizes it without adding
special tokens (the template writes them), as the server does. ``labels`` is -100 everywhere
except on each assistant turn's content and its end-of-turn token (``<|im_end|>`` in ChatML), so
the adapter learns the answers and when to stop, never the questions or the system prompt.
Whitespace the template writes after the end-of-turn token is not trained (the server stops at
the end-of-turn token). A preference pair's completion is labelled alone (``last_turn_only``):
DPO scores the answer given the conversation before it.

Each assistant turn's span is found by rendering the conversation up to that turn with the
generation prompt (the span starts there) and up to and including it (the span ends there); the
token ids of each such prefix must be a prefix of the full ids, else :class:`TokenizeError`
(a template or tokenizer where that does not hold would silently misplace the labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from adapters.chat_format import render

IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy skips."""


class TokenizeError(ValueError):
    """A conversation the tokenizer/template cannot split into prompt and answer tokens."""


@dataclass(frozen=True)
class EncodedSample:
    """One conversation as token ids and labels of equal length."""

    input_ids: list[int]
    labels: list[int]
    """``IGNORE_INDEX`` except on the assistant turns' tokens."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        """Tokens that carry a label."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def _prefix_length(
    tokenizer: PreTrainedTokenizerBase, full: list[int], turns: list[dict[str, str]], generation_prompt: bool
) -> int:
    ids = _ids(tokenizer, render(tokenizer, turns, add_generation_prompt=generation_prompt))
    if full[: len(ids)] != ids:
        raise TokenizeError(
            "The chat template's rendering of a conversation prefix does not tokenize to a prefix of "
            "the whole conversation; assistant-only labels cannot be placed."
        )
    return len(ids)


def encode(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], *, last_turn_only: bool = False
) -> EncodedSample:
    """Token ids of ``messages`` (already including any system prompt) with assistant-only labels;
    ``last_turn_only``: labels on the last message only (a preference pair's completion), which
    must be the assistant's."""
    if not any(m["role"] == "assistant" for m in messages) or (last_turn_only and messages[-1]["role"] != "assistant"):
        raise TokenizeError("A training sample needs at least one assistant message (the last one, for a completion).")
    full = _ids(tokenizer, render(tokenizer, messages, add_generation_prompt=False))
    labels = [IGNORE_INDEX] * len(full)
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or (last_turn_only and index < len(messages) - 1):
            continue
        start = _prefix_length(tokenizer, full, messages[:index], generation_prompt=True)
        end = _prefix_length(tokenizer, full, messages[: index + 1], generation_prompt=False)
        while end > start and not str(tokenizer.decode([full[end - 1]])).strip():
            end -= 1  # the template's newline after the end-of-turn token
        labels[start:end] = full[start:end]
    return EncodedSample(input_ids=full, labels=labels)
