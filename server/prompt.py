"""Chat messages -> prompt token ids, with the base model's own chat template.

The text comes from :mod:`adapters.chat_format`, the rule the trainer renders its samples with,
so an adapter sees at chat time exactly the shape it was trained on (the template's hash is in
every adapter manifest). ``system_prompt`` is the tenant's, applied when the request brings no
system message. A template that rejects the conversation (some demand alternating roles) is the
client's error, not the server's.

Tools (:class:`ToolsInPrompt`): a template that renders tools itself gets them, and the history's
tool calls and results, in the structured form Hugging Face templates take. Any other template
gets the tools described in the system message, each earlier call as the JSON object the model
is asked to produce, and each tool result as a user turn naming the call it answers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from adapters.chat_format import conversation, render
from server.api.chat_request import ChatMessage
from server.errors import bad_request

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


def refuse_what_cannot_fit(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], context: int, param: str = "messages"
) -> None:
    """A 400 for texts (a prompt's messages, or one text prompt) that cannot fit ``context`` tokens
    even if every token were the vocabulary's longest, before any tokenizing: a 10 MB prompt
    costs a length check, not 15 s of tokenizer time."""
    size = sum(len(text.encode("utf-8")) for text in texts)
    if size > context * longest_token_bytes(tokenizer):
        raise bad_request(
            f"The {param} ({size} bytes) cannot fit this model's context of {context} tokens.",
            param=param,
            code="context_length_exceeded",
        )


@dataclass(frozen=True)
class ToolsInPrompt:
    """The tools a request offers and how its template takes them."""

    tools: list[dict[str, Any]]
    """OpenAI tool definitions."""
    native: bool
    """The chat template renders tools itself."""
    instruction: str = ""
    """Added to the system message when the template does not (see :mod:`server.tool_calls`)."""


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _turn(message: ChatMessage, native: bool) -> dict[str, Any]:
    """One message as a template turn."""
    if message.role == "tool":
        if native:
            return {"role": "tool", "content": message.text(), "tool_call_id": message.tool_call_id}
        return {"role": "user", "content": f"Result of tool call {message.tool_call_id}: {message.text()}"}
    if not message.tool_calls:
        return {"role": message.role, "content": message.text()}
    if native:
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)},
            }
            for c in message.tool_calls
        ]
        return {"role": "assistant", "content": message.text(), "tool_calls": calls}
    said = [
        json.dumps({"name": c.function.name, "arguments": _arguments(c.function.arguments)}) for c in message.tool_calls
    ]
    return {"role": "assistant", "content": "\n".join(filter(None, [message.text(), *said]))}


def render_prompt(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[ChatMessage],
    system_prompt: str | None = None,
    tools: ToolsInPrompt | None = None,
) -> list[int]:
    """Token ids of ``messages`` followed by the assistant's turn header."""
    native = tools is not None and tools.native
    turns = conversation((_turn(m, native) for m in messages), system_prompt)
    if tools is not None and tools.instruction:
        if turns and turns[0]["role"] == "system":
            turns[0] = {**turns[0], "content": f"{turns[0]['content']}\n\n{tools.instruction}"}
        else:
            turns.insert(0, {"role": "system", "content": tools.instruction})
    try:
        text = render(tokenizer, turns, add_generation_prompt=True, tools=tools.tools if native and tools else None)
    except TemplateError as exc:
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
    return ids
