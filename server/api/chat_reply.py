"""A chat completion's response body and stream chunks, built from engine results, in OpenAI's shapes.

Contract: :class:`ChatReply` knows the reply's id, time, served model and tool mode, and turns
one choice's text and logprobs into a ``choices[i]`` entry (:meth:`ChatReply.choice`) or stream
chunks. Tool modes: ``forced`` (``tool_choice`` required or a named function: the text is the
one JSON call the grammar allowed), ``auto`` (a template with tool support: calls are read from
``<tool_call>`` blocks, the Hermes/Qwen convention) and ``none``. A reply with calls has
``content: null``, ``tool_calls`` and ``finish_reason: "tool_calls"``; a forced call cut short by
``max_tokens`` is returned as text with ``finish_reason: "length"``. ``usage`` is the route's.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from server.api.logprobs import TokenBytes, chat_logprobs
from server.engine.requests import Finished, TokenLogprob
from server.tool_calls import parse_tool_call, parse_tool_call_blocks

ToolMode = Literal["none", "forced", "auto"]


class ChatReply:
    """See the module docstring."""

    def __init__(self, created: int, model: str, token_bytes: TokenBytes, tools: ToolMode, logprobs: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = created
        self.model = model
        self.token_bytes = token_bytes
        self.tools = tools
        self.logprobs = logprobs
        self.citations: list[dict[str, Any]] | None = None
        """The passages retrieval put into the prompt (an extension field): in the reply, and in
        each choice's finish chunk of a stream."""

    def message(self, text: str, finished: Finished) -> tuple[dict[str, Any], str]:
        """The assistant message of a whole choice and its finish reason."""
        calls: list[dict[str, Any]] = []
        content: str | None = text
        if self.tools == "forced" and finished.reason == "stop":
            call = parse_tool_call(text, _call_id())
            calls, content = ([call], None) if call is not None else ([], text)
        elif self.tools == "auto":
            content, calls = parse_tool_call_blocks(text, _call_id)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
            return message, "tool_calls"
        return message, finished.reason

    def choice(self, index: int, text: str, logprobs: list[TokenLogprob], finished: Finished) -> dict[str, Any]:
        message, reason = self.message(text, finished)
        return {"index": index, "message": message, "logprobs": self._logprobs(logprobs), "finish_reason": reason}

    def body(self, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
            **self._cited(),
        }

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...] = (),
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": self._logprobs(logprobs), "finish_reason": finish_reason}
        return {**self._chunk([choice]), **(self._cited() if finish_reason is not None else {})}

    def _cited(self) -> dict[str, Any]:
        return {"citations": self.citations} if self.citations is not None else {}

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._chunk([]), "usage": usage}

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _logprobs(self, entries: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any] | None:
        return chat_logprobs(entries, self.token_bytes) if self.logprobs else None


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
