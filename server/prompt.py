"""Chat messages -> prompt token ids, with the base model's own chat template.

The template is the tokenizer's (the same one the trainer renders samples with; its hash is in
every adapter manifest). ``developer`` is OpenAI's newer name for ``system`` and is rendered as
one. A template that rejects the conversation (some demand alternating roles) is the client's
error, not the server's.
"""

from __future__ import annotations

from jinja2 import TemplateError

from server.errors import bad_request
from server.schemas import ChatMessage


def render_prompt(tokenizer, messages: list[ChatMessage]) -> list[int]:
    """Token ids of ``messages`` followed by the assistant's turn header."""
    conversation = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages
    ]
    try:
        text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    except TemplateError as exc:
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    return tokenizer(text, add_special_tokens=False).input_ids
