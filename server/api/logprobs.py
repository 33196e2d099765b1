"""Engine logprobs in OpenAI's two shapes: chat's ``logprobs.content`` and completions' four lists.

Contract: a token's text is its bytes decoded as UTF-8; a token that is only part of a character
(byte-level BPE splits them) is written ``bytes:\\xNN...`` (as vLLM does) and its exact ``bytes``
are always given in the chat shape. A log-probability of minus infinity (a token the request's
grammar forbids) is written -9999.0, as OpenAI does, because JSON has no infinity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from server.engine.requests import TokenLogprob

TokenBytes = Callable[[int], bytes]
FLOOR = -9999.0


def _value(logprob: float) -> float:
    return logprob if logprob > FLOOR else FLOOR


def token_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def _entry(token: int, logprob: float, token_bytes: TokenBytes) -> dict[str, Any]:
    raw = token_bytes(token)
    return {"token": token_text(raw), "logprob": _value(logprob), "bytes": list(raw)}


def chat_content(entries: Iterable[TokenLogprob], token_bytes: TokenBytes) -> list[dict[str, Any]]:
    """The ``logprobs.content`` list of a chat choice (or chunk)."""
    return [
        {
            **_entry(e.token, e.logprob, token_bytes),
            "top_logprobs": [_entry(t, lp, token_bytes) for t, lp in e.top],
        }
        for e in entries
    ]


def chat_logprobs(entries: Iterable[TokenLogprob], token_bytes: TokenBytes) -> dict[str, Any]:
    return {"content": chat_content(entries, token_bytes), "refusal": None}


def completion_logprobs(
    entries: Iterable[TokenLogprob], token_bytes: TokenBytes, text_offset: int = 0
) -> dict[str, Any]:
    """Completions' ``{tokens, token_logprobs, top_logprobs, text_offset}``. An entry whose logprob
    is NaN has none (the first token of an echoed prompt: nothing came before it); it is null."""
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for entry in entries:
        text = token_text(token_bytes(entry.token))
        tokens.append(text)
        first = math.isnan(entry.logprob)
        values.append(None if first else _value(entry.logprob))
        # as OpenAI's: the sampled token is always among its top_logprobs (up to logprobs + 1 entries)
        alternatives = {token_text(token_bytes(t)): _value(lp) for t, lp in entry.top}
        tops.append(None if first else {**alternatives, text: _value(entry.logprob)})
        offsets.append(text_offset)
        text_offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}
