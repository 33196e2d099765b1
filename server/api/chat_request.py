"""``POST /v1/chat/completions``'s body: messages (tool calls and results included), tools,
``response_format`` and ``logprobs``, on top of the shared :class:`~server.api.sampling_fields.SamplingFields`.

Contract: what this class accepts, the server honours; what it does not list is a 400 naming the
parameter. Role rules are checked here (a ``tool`` message needs ``tool_call_id``; only an
assistant message carries ``tool_calls`` and may then have no content). Counts and sizes are
bounded (tools, calls, names); JSON schemas are checked when compiled (:mod:`server.engine.grammar`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from server.api.sampling_fields import SamplingFields
from server.schemas import Strict

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function names (fixed, never from input)
MAX_TOOLS = 64
MAX_TOP_LOGPROBS = 20


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("function names are 1 to 64 letters, digits, '_' or '-'")
    return name


class TextPart(Strict):
    """One text part of a message's content (images and audio are not supported)."""

    type: Literal["text"]
    text: str


class CalledFunction(Strict):
    name: str
    arguments: str = Field(max_length=65536)

    _name = field_validator("name")(_check_name)


class ToolCall(Strict):
    """A call an assistant message made (sent back in the history)."""

    id: str = Field(max_length=128)
    type: Literal["function"]
    function: CalledFunction


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(None, max_length=128)
    refusal: str | None = None
    """Sent back by clients that replay a reply whole; ignored."""

    @model_validator(mode="after")
    def _check_role(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls: only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: a tool message needs the tool_call_id it answers")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: required (null only in an assistant message with tool_calls)")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(Strict):
    name: str
    description: str | None = Field(None, max_length=4096)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    _name = field_validator("name")(_check_name)


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class TextFormat(Strict):
    type: Literal["text"]


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


class JsonSchema(Strict):
    name: str = Field(max_length=64)
    description: str | None = Field(None, max_length=4096)
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``: what this server honours, and nothing else."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, min_length=1, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    @model_validator(mode="after")
    def _check_choices(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs: true")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice: names {self.tool_choice.function.name!r}, which is not in tools")
        elif self.tool_choice in ("auto", "required") and not self.tools:
            raise ValueError(f"tool_choice: {self.tool_choice!r} needs tools")
        if self.tools and len({t.function.name for t in self.tools}) != len(self.tools):
            raise ValueError("tools: function names must be unique")
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    @property
    def logprobs_count(self) -> int | None:
        """None: no logprobs; else how many alternatives each token reports."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def calls_tool(self) -> str | bool:
        """False: answer in text; True: call one of the tools; a name: call that tool."""
        if not self.tools or self.tool_choice == "none":
            return False
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return True
