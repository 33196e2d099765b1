"""How a conversation becomes model text: the one rule the server and the trainer share.

An adapter is trained on exactly the text the server will feed it, so both sides build the
prompt here:

- :func:`conversation` normalises roles (OpenAI's ``developer`` is rendered as ``system``) and
  prepends the tenant's system prompt when the messages bring no system message of their own.
  With no tenant system prompt either, the chat template's own default applies (SmolLM2's
  template adds one), on both sides alike.
- :func:`render` applies the tokenizer's own chat template (its sha256 is in every manifest).

A template may reject a conversation (some demand alternating roles); that surfaces as
``jinja2.TemplateError`` for the caller to turn into its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def conversation(messages: Iterable[Mapping[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
    """``messages`` as dicts (``role``, ``content`` and any other key, e.g. ``tool_calls``), with
    ``system_prompt`` first if none is given."""
    turns = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in messages]
    if system_prompt and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": system_prompt})
    return turns


def render(
    tokenizer: PreTrainedTokenizerBase,
    turns: list[dict[str, Any]],
    add_generation_prompt: bool,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """The template's text for ``turns`` (and ``tools``, for a template that renders them); with
    ``add_generation_prompt`` it ends at the assistant header."""
    offered = cast("list[dict[Any, Any] | Callable[..., Any]] | None", tools)
    text = tokenizer.apply_chat_template(
        turns, tools=offered, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    assert isinstance(text, str)  # tokenize=False: the rendered text, never ids
    return text
