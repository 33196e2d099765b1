"""Constrained decoding with llguidance: JSON mode, JSON schemas and tool calls.

Contract:
- :class:`GrammarCompiler` (one per base model) compiles a ``response_format`` or forced tool call
  into a :class:`Grammar` in the caller's thread (routes use a thread pool), never the engine's. A
  schema too big, malformed or using a feature llguidance lacks raises :class:`GrammarError`
  (``message`` names the problem, no traceback; ``param``): the route's 400.
- :meth:`Grammar.matcher` copies a compiled prototype into a fresh :class:`RowMatcher` per batch row.
  Per decode step the engine calls :meth:`RowMatcher.fill_bitmask`, :func:`apply_bitmask`, samples,
  :meth:`RowMatcher.accept` (False: the token broke the grammar or hit a parser limit; end the row)
  and ends the row with ``stop`` once :attr:`RowMatcher.finished`. A complete grammar allows exactly
  the EOS ids given to the compiler plus ``tokenizer.eos_token_id``; so does a failed one (the
  sampler never sees an all -inf row).
- :func:`default_limits` bound work per token and grammar size: a hostile schema ends its own row
  with an error instead of stalling the engine thread. JSON is compact (``, `` and ``: ``, no other whitespace).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import llguidance.hf
import torch
from llguidance import LLMatcher, LLParserLimits, LLTokenizer
from llguidance.torch import fill_next_token_bitmask
from torch.nn import functional

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

DEFAULT_MAX_SCHEMA_BYTES = 64 * 1024
# Compact JSON, as OpenAI writes it (", " and ": " between items and after keys, no other
# whitespace). Flexible whitespace, even bounded per gap, let a small model spend its max_tokens on
# runs of tabs between tokens at temperature 0.7 (2 of 12 replies cut short); compact: 32 of 32
# whole, ~40 % fewer tokens.
# Override any "x-guidance" options a schema brings (also stripped): a request cannot loosen these.
_JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "coerce_one_of": False,  # oneOf stays exact (an overlapping oneOf is refused, not approximated)
    "lenient": False,  # an unimplemented keyword is refused: the output must satisfy the whole schema
}


def default_limits() -> LLParserLimits:
    """Parser limits for public requests (llguidance's defaults in brackets).

    - ``step_lexer_fuel`` 50k [200k], ``step_max_items`` 20k [50k]: lexer work (~14k/ms) and Earley
      items (~20k/ms) per token, so at most ~5 ms per row per step.
    - ``max_lexer_states`` 10k [250k]: 1-2 kB a state, so ~20 MB per row, not ~500 MB; random walks
      over formats, 5000-value enums, 300-way anyOf stay under 500; a regex built to blow up
      (``(a|b)*a[a-z]{300}x``) hits it within a few tokens and ends its row.
    - ``max_grammar_size`` 100k [500k] symbols: 64 KiB schemas compile to 5k-20k (1300 properties:
      0.6 s to build), so this only bounds build time and memory in the route's thread.
    - ``initial_lexer_fuel`` 1M (~20 ms, in the caller's thread), ``max_items_in_row`` 2000: defaults.
    - ``verbose_errors`` off: errors go back to clients; no parser dumps.
    """
    return LLParserLimits(
        step_lexer_fuel=50_000,
        step_max_items=20_000,
        max_lexer_states=10_000,
        max_grammar_size=100_000,
        verbose_errors=False,
    )


class GrammarError(ValueError):
    """A schema or tool list the engine cannot constrain to (a 400 for the client)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class RowMatcher:
    """One batch row's parser state (see the module docstring for the calling order)."""

    def __init__(self, matcher: LLMatcher) -> None:
        self._matcher = matcher

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the tokens allowed next into row ``row`` of ``bitmask`` (int32, CPU, [rows, words])."""
        fill_next_token_bitmask(self._matcher, bitmask, row)

    def accept(self, token: int) -> bool:
        """Consume a sampled token; False if it broke the grammar or a limit was hit (end the row).
        In its error state llguidance still "consumes" EOS: the error flag is what counts."""
        return self._matcher.consume_token(token) and not self._matcher.is_error()

    @property
    def finished(self) -> bool:
        """The grammar is complete and nothing but EOS may follow."""
        return self._matcher.is_stopped() and not self._matcher.is_error()

    @property
    def error(self) -> str | None:
        """Why the row failed (a broken grammar or a parser limit), None while it is fine."""
        return _clean(self._matcher.get_error()) if self._matcher.is_error() else None


class Grammar:
    """A validated grammar; :meth:`matcher` copies its compiled prototype for each row. ``source``
    is llguidance's grammar text: :meth:`GrammarCompiler.from_source` rebuilds the grammar from it
    in another process (an engine replica) with the same tokenizer."""

    def __init__(self, prototype: LLMatcher, source: str) -> None:
        self._prototype = prototype
        self._lock = threading.Lock()
        self.source = source

    def matcher(self) -> RowMatcher:
        with self._lock:
            return RowMatcher(self._prototype.deep_copy())


class GrammarCompiler:
    """Compiles grammars for one tokenizer (see the module docstring)."""

    def __init__(
        self,
        tokenizer: Any,
        eos_token_ids: Iterable[int] = (),
        max_schema_bytes: int = DEFAULT_MAX_SCHEMA_BYTES,
        *,
        limits: LLParserLimits | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab_size: int = len(tokenizer)  # tokens in the bitmask: words = (vocab_size + 31) // 32
        ids = {*eos_token_ids, tokenizer.eos_token_id}
        self.eos_token_ids = sorted(i for i in ids if isinstance(i, int) and 0 <= i < self.vocab_size)
        self.max_schema_bytes = max_schema_bytes
        self.limits = limits or default_limits()
        self._lock = threading.Lock()
        self._lltok: LLTokenizer | None = None
        self._json_object: Grammar | None = None
        self._token_bytes: dict[int, bytes] = {}

    @property
    def lltokenizer(self) -> LLTokenizer:
        """llguidance's view of the tokenizer, built once (~0.4 s) on first use."""
        if self._lltok is None:
            with self._lock:
                if self._lltok is None:
                    self._lltok = llguidance.hf.from_tokenizer(
                        self.tokenizer, n_vocab=self.vocab_size, eos_token=self.eos_token_ids or None
                    )
        return self._lltok

    def json_object(self) -> Grammar:
        """Any JSON object (OpenAI's ``{"type": "json_object"}``)."""
        if self._json_object is None:
            self._json_object = self._compile({"type": "object"}, "response_format")
        return self._json_object

    def json_schema(self, schema: Any, param: str = "response_format") -> Grammar:
        """A JSON value matching ``schema`` (OpenAI's ``json_schema.schema``)."""
        if not isinstance(schema, dict):
            raise GrammarError("The JSON schema must be a JSON object.", param)
        schema = {k: v for k, v in schema.items() if k != "x-guidance"}
        return self._compile(schema, param)

    def tool_call(self, tools: list[dict[str, Any]], name: str | None) -> Grammar:
        """One JSON object ``{"name": ..., "arguments": {...}}`` calling one of ``tools`` (OpenAI tool
        definitions), or the tool ``name`` when given."""
        params = _tool_parameters(tools)  # checked before anything is compiled
        if name is not None and name not in params:
            raise GrammarError(f"tool_choice names {name!r}, which is not among the tools.", "tool_choice")
        names = [name] if name is not None else list(params)
        try:  # one call schema at the root, or several under anyOf
            calls = [_call_schema(n, params[n], f"#/anyOf/{i}" if name is None else "#") for i, n in enumerate(names)]
        except RecursionError:
            raise GrammarError("The tools' parameter schemas are nested too deeply.", "tools") from None
        return self._compile(calls[0] if name is not None else {"anyOf": calls}, "tools")

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one token (OpenAI's logprobs ``bytes``); may be part of a character."""
        cached = self._token_bytes.get(token_id)
        if cached is None:
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(f"token id {token_id} is outside the vocabulary")
            cached = self._token_bytes[token_id] = self.lltokenizer.decode_bytes([token_id])
        return cached

    def _compile(self, schema: dict[str, Any], param: str) -> Grammar:
        try:
            text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise GrammarError(f"The schema is not valid JSON ({type(exc).__name__}).", param) from None
        size = len(text.encode())
        if size > self.max_schema_bytes:
            raise GrammarError(f"The schema is {size} bytes; at most {self.max_schema_bytes} are accepted.", param)
        try:
            grammar = LLMatcher.grammar_from_json_schema(text, overrides=_JSON_OPTIONS)
        except ValueError as exc:
            raise GrammarError(f"Unsupported JSON schema: {_clean(str(exc))}", param) from None
        return self.from_source(grammar, param)

    def from_source(self, grammar: str, param: str = "response_format") -> Grammar:
        """The grammar of llguidance's grammar text ``grammar`` (a :attr:`Grammar.source`)."""
        # Building the matcher validates the grammar; the first mask builds the lexer's start states.
        prototype = LLMatcher(self.lltokenizer, grammar, limits=self.limits, log_level=0)
        if not prototype.is_error():
            fill_next_token_bitmask(prototype, new_bitmask(1, self.vocab_size), 0)
        if prototype.is_error():
            raise GrammarError(f"Unsupported JSON schema: {_clean(prototype.get_error())}", param)
        return Grammar(prototype, grammar)


def new_bitmask(rows: int, vocab: int) -> torch.Tensor:
    """An int32 CPU bitmask for ``rows`` rows of ``vocab`` tokens (all allowed)."""
    return torch.full((rows, (vocab + 31) // 32), -1, dtype=torch.int32)


@torch.inference_mode()  # the engine's logits are inference tensors: in-place edits need the mode
def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: list[int]) -> None:
    """Set the tokens ``bitmask`` disallows to -inf in the listed rows of ``logits`` ([batch, vocab]),
    in place; the bitmask row ``i`` masks logits row ``i``. Columns beyond the bitmask are disallowed.
    Allowed logits are untouched (+0.0): disallowed ones get -inf added (finite logits become -inf)."""
    if not rows:
        return
    device = logits.device
    words = bitmask.index_select(0, torch.tensor(rows, dtype=torch.long)).to(device, non_blocking=True)
    # Bit j of word w is token 32*w + j: split words into bytes (low first), look each byte's 8 biases up.
    octets = (words.unsqueeze(-1) >> torch.tensor([0, 8, 16, 24], dtype=torch.int32, device=device)) & 0xFF
    bias = functional.embedding(octets.flatten(1).long(), _byte_bias(logits.dtype, device)).flatten(1)
    bias = functional.pad(bias, (0, logits.shape[-1] - bias.shape[1]), value=float("-inf"))  # cut or extend
    logits.index_add_(0, torch.tensor(rows, dtype=torch.long, device=device), bias)


@functools.cache
def _byte_bias(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[256, 8]``: entry ``[b, j]`` is 0 when bit ``j`` of byte ``b`` is set (allowed), else -inf.
    A lookup is ~8x faster on CPU than unpacking every bit and ``masked_fill``."""
    bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
    return torch.zeros(256, 8).masked_fill_(bits == 0, float("-inf")).to(dtype=dtype, device=device)


# Keywords that let an object have properties beyond its own "properties" (left as the tool says).
_OPEN = frozenset("additionalProperties patternProperties unevaluatedProperties allOf anyOf oneOf $ref".split())


def _tool_parameters(tools: Any) -> dict[str, dict[str, Any]]:
    """``{name: parameters schema}`` of OpenAI tool definitions, checked."""
    if not isinstance(tools, list) or not tools:
        raise GrammarError("tools must be a non-empty list of functions.", "tools")
    params: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise GrammarError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}.", "tools")
        name, parameters = function.get("name"), function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not name or name in params:
            raise GrammarError(f"tools[{i}].function.name must be a non-empty string, unique among the tools.", "tools")
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise GrammarError(f"tools[{i}].function.parameters must be a JSON schema of an object.", "tools")
        params[name] = parameters
    return params


def _call_schema(name: str, parameters: dict[str, Any], at: str) -> dict[str, Any]:
    """The schema of a call to ``name``, placed at JSON pointer ``at`` of the whole schema."""
    arguments = {k: v for k, v in parameters.items() if k not in ("$id", "$schema", "x-guidance")}
    arguments["type"] = "object"
    if "properties" in arguments and not _OPEN & arguments.keys():
        arguments["additionalProperties"] = False  # a function takes the arguments it declares ({} for none)
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": _rebase(arguments, f"{at}/properties/arguments")},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def _rebase(node: Any, base: str, schema_map: bool = False) -> Any:
    """``node`` with its local ``$ref`` pointers (``#``, ``#/...``) moved under ``base``: the tool's
    parameters become a subschema, and their ``#/$defs/...`` must still find their definitions.
    ``schema_map``: ``node`` maps names to schemas (``properties``), so no key of it is a keyword."""
    if isinstance(node, list):
        return [_rebase(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    if schema_map:
        return {key: _rebase(value, base) for key, value in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and (value == "#" or value.startswith("#/")):
            out[key] = base + value[1:]
        elif key in _DATA_KEYWORDS:
            out[key] = value  # JSON data, not schemas
        else:
            out[key] = _rebase(value, base, key in _SCHEMA_MAPS)
    return out


def _clean(message: str) -> str:
    """llguidance's message on one line, without its non-verbose marker, bounded in length."""
    text = re.sub(r"\s+", " ", message.replace("<non-verbose/>", "")).strip()
    return text if len(text) <= 400 else text[:397] + "..."
