"""Request fields that chat and text completions share, and how they become engine sampling rules.

Contract: :class:`SamplingFields` validates each field's range at the edge (OpenAI's ranges, and
vLLM's for its extensions ``repetition_penalty``, ``min_tokens``, ``ignore_eos``), including a
bound on every list and map a stranger can send. :data:`IGNORED_PARAMETERS` is the fixed list of
parameters accepted for compatibility that change nothing here; any other unknown parameter is
still a 400 naming it. Token ids in ``logit_bias`` are checked against the vocabulary by
:func:`sampling_params`, which the route calls once it knows the prompt and the model.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from server.engine.sampling import SamplingParams
from server.errors import bad_request
from server.schemas import Strict

IGNORED_PARAMETERS = (
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "store",
    "metadata",
    "parallel_tool_calls",
    "service_tier",
    "prediction",
)
"""Accepted and ignored (documented in the README): identifiers for OpenAI's abuse monitoring and
its own caches (this server caches prefixes by content), storage on OpenAI's side, OpenAI's
service tiers, predicted outputs (a latency hint), and parallel tool calls (one call per reply)."""

MAX_LOGIT_BIAS = 300
MAX_STOP = 4


class StreamOptions(Strict):
    include_usage: bool = False


class SamplingFields(Strict):
    """Fields of both completion APIs; see the module docstring."""

    model: str = Field(max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    n: int = Field(1, ge=1, le=128)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)
    """Extension (vLLM's): > 1 discourages tokens already in the prompt or the output."""
    min_tokens: int = Field(0, ge=0)
    """Extension (vLLM's): end-of-sequence is masked until this many tokens were generated."""
    ignore_eos: bool = False
    """Extension (vLLM's): generate exactly ``max_tokens``, past end-of-sequence; for benchmarks."""
    # Accepted and ignored (IGNORED_PARAMETERS), each bounded.
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    prompt_cache_key: str | None = Field(None, max_length=256)
    store: bool | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    parallel_tool_calls: bool | None = None
    service_tier: str | None = Field(None, max_length=32)
    prediction: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s or len(s) > 256 for s in stops):
            raise ValueError("stop sequences must be 1 to 256 characters")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} entries")
        for key, bias in value.items():
            if not key.isascii() or not key.isdigit() or len(key) > 9:
                raise ValueError(f"keys must be token ids (non-negative integers), not {key[:20]!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError("biases must be between -100 and 100")
        return value

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
            raise ValueError("keys are at most 64 characters and values at most 512")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        return "max_tokens"


def sampling_params(body: SamplingFields, max_tokens: int, vocab: int, logprobs: int | None = None) -> SamplingParams:
    """The engine's rules for ``body``; a 400 for a ``logit_bias`` token outside the vocabulary."""
    bias = tuple((int(k), float(v)) for k, v in (body.logit_bias or {}).items())
    outside = [token for token, _ in bias if token >= vocab]
    if outside:
        raise bad_request(
            f"logit_bias names token {outside[0]}, outside this model's vocabulary of {vocab} tokens.",
            param="logit_bias",
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_strings(),
        ignore_eos=body.ignore_eos,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=bias,
        min_tokens=min(body.min_tokens, max_tokens),
        logprobs=logprobs,
    )
