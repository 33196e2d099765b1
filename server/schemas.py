"""Request bodies of the OpenAI-compatible API, validated strictly at the edge.

Unknown fields are refused, not ignored: a client that asks for ``tools``, ``n=2`` or
``logit_bias`` learns at once that this server does not do it (400, naming the parameter).
:func:`parse_json` turns any validation failure, malformed JSON included, into an
:class:`~server.errors.APIError` in OpenAI's shape.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from server.errors import APIError, bad_request

Model = TypeVar("Model", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TextPart(_Strict):
    """One text part of a message's content (images and audio are not supported)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions``: what this server honours, and nothing else."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    n: Literal[1] = 1
    ignore_eos: bool = False
    """Extension (as vLLM's): generate exactly ``max_tokens``, past end-of-sequence; for benchmarks."""
    user: str | None = Field(None, max_length=256)
    """Accepted for compatibility; not used for anything."""

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict"}


def _is_field(part: object) -> bool:
    """Pydantic puts union member names (``str``, ``list[TextPart]``) in error locations."""
    text = str(part)
    return text not in _UNION_TAGS and "[" not in text and not text.startswith("function-")


def _describe(error: ErrorDetails) -> tuple[str, str | None]:
    loc = ".".join(str(part) for part in error.get("loc", ()) if _is_field(part))
    kind = error.get("type", "")
    if kind == "json_invalid":
        return "The request body is not valid JSON.", None
    if kind == "model_type" and not loc:
        return "The request body must be a JSON object.", None
    if kind == "extra_forbidden":
        return f"Unsupported parameter: '{loc}' is not supported by this server.", loc
    if kind == "missing":
        return f"Missing required parameter: '{loc}'.", loc
    return f"Invalid value for '{loc}': {error.get('msg', 'invalid')}.", loc or None


def parse_json(model: type[Model], body: bytes) -> Model:
    """Validate a JSON body against ``model``; raise a 400 that names the first bad parameter."""
    if not body.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        message, param = _describe(exc.errors()[0])
        raise APIError(400, message, param=param, code="invalid_request") from None
