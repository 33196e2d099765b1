"""Chat messages -> prompt token ids, with the base model's own chat template.

The text comes from :mod:`adapters.chat_format`, the rule the trainer renders its samples with,
so an adapter sees at chat time exactly the shape it was trained on (the template's hash is in
every adapter manifest). ``system_prompt`` is the tenant's, applied when the request brings no
system message. A template that rejects the conversation (some demand alternating roles) is the
client's error, not the server's.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from jinja2 import TemplateError

from adapters.chat_format import conversation, render
from server.errors import bad_request
from server.schemas import ChatMessage

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@functools.cache
def longest_token_bytes(tokenizer: PreTrainedTokenizerBase) -> int:
    """The most UTF-8 bytes one token of ``tokenizer`` stands for (computed once per tokenizer,
    about 0.1 s for a 49k vocabulary)."""

    def token_bytes(token_id: int) -> int:
        text = tokenizer.decode([token_id])
        assert isinstance(text, str)  # one sequence of ids decodes to one string
        return len(text.encode("utf-8"))

    return max(1, max(token_bytes(i) for i in range(len(tokenizer))))


def refuse_what_cannot_fit(tokenizer: PreTrainedTokenizerBase, messages: list[ChatMessage], context: int) -> None:
    """A 400 for messages whose text cannot fit ``context`` tokens even if every token were the
    vocabulary's longest, before any tokenizing: a 10 MB prompt costs a length check, not 15 s of
    tokenizer time."""
    size = sum(len(m.text().encode("utf-8")) for m in messages)
    if size > context * longest_token_bytes(tokenizer):
        raise bad_request(
            f"The messages ({size} bytes) cannot fit this model's context of {context} tokens.",
            param="messages",
            code="context_length_exceeded",
        )


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: list[ChatMessage], system_prompt: str | None = None
) -> list[int]:
    """Token ids of ``messages`` followed by the assistant's turn header."""
    turns = conversation(({"role": m.role, "content": m.text()} for m in messages), system_prompt)
    try:
        text = render(tokenizer, turns, add_generation_prompt=True)
    except TemplateError as exc:
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
    return ids
