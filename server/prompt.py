"""Chat messages -> prompt token ids, with the base model's own chat template.

The text comes from :mod:`adapters.chat_format`, the rule the trainer renders its samples with,
so an adapter sees at chat time exactly the shape it was trained on (the template's hash is in
every adapter manifest). ``system_prompt`` is the tenant's, applied when the request brings no
system message. A template that rejects the conversation (some demand alternating roles) is the
client's error, not the server's.
"""

from __future__ import annotations

from jinja2 import TemplateError

from adapters.chat_format import conversation, render
from server.errors import bad_request
from server.schemas import ChatMessage


def render_prompt(tokenizer, messages: list[ChatMessage], system_prompt: str | None = None) -> list[int]:
    """Token ids of ``messages`` followed by the assistant's turn header."""
    turns = conversation(({"role": m.role, "content": m.text()} for m in messages), system_prompt)
    try:
        text = render(tokenizer, turns, add_generation_prompt=True)
    except TemplateError as exc:
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    return tokenizer(text, add_special_tokens=False).input_ids
