"""Strict JSON request bodies: the base class of every request shape, and the one parser.

Unknown fields are refused, not ignored: a client that asks for something this server does not
do learns it at once (400, naming the parameter). The shapes live in :mod:`server.api`.
:func:`parse_json` turns any validation failure, malformed JSON included, into an
:class:`~server.errors.APIError` in OpenAI's shape.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from server.errors import APIError, bad_request

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """A request shape: unknown fields refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_NAMED = re.compile(r"(?P<param>[a-z_]+(?:\.[a-z_0-9]+)*): (?P<text>.+)", re.DOTALL)
"""How a model-level validator names the parameter at fault: ``"param: what is wrong"``."""
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
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    named = _NAMED.match(message) if kind == "value_error" else None
    if named:  # a rule over several fields names the one to fix: "top_logprobs: needs logprobs: true"
        loc = ".".join(filter(None, [loc, named["param"]]))
        message = named["text"]
    return f"Invalid value for '{loc}': {message}.", loc or None


def parse_json(model: type[Model], body: bytes) -> Model:
    """Validate a JSON body against ``model``; raise a 400 that names the first bad parameter."""
    if not body.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        message, param = _describe(exc.errors()[0])
        raise APIError(400, message, param=param, code="invalid_request") from None
