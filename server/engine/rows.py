"""A batch row: one choice of one request, from its prefill to its last token.

Contract: a request's prompt is prefilled once, in the request's first row; when the prefill ends
the row *forks* into ``n`` rows (:func:`fork`), one per choice, each with its own sampler
generator (seed + index when the request is seeded), detokenizer, logits processors and grammar
state, all starting from the same prompt cache. :meth:`Row.take_logprobs` hands the logprobs
gathered since the last event to the next event, so every token is reported exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from server.engine.detokenizer import IncrementalText, TokenDecoder
from server.engine.logits_processing import GrammarMasks, RowLogits, process_rows
from server.engine.requests import GenerationRequest, RequestHandle, TokenLogprob
from server.engine.sampling import make_generator, sample_rows, token_logprobs


@dataclass
class Row:
    request: GenerationRequest
    handle: RequestHandle
    text: IncrementalText
    generator: torch.Generator
    logits: RowLogits
    index: int = 0
    """The choice this row generates."""
    choices: int = 1
    """Choices this row stands for: the request's ``n`` until it forks, then 1."""
    adapter_key: str | None = None
    """The row's adapter in the cache (None: base)."""
    pinned: bool = False
    generated: int = 0
    last_token: int = -1
    finished: bool = False
    cache: DynamicCache | None = None
    """The request's own cache while its prompt is prefilled (chunk by chunk)."""
    prefilled: int = 0
    cached_tokens: int = 0
    """Prompt tokens that came from the prefix cache."""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """Logprobs of tokens not yet reported."""
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    """The prompt's own logprobs (choice 0, when asked)."""

    def take_logprobs(self) -> tuple[TokenLogprob, ...]:
        taken, self.logprobs = tuple(self.logprobs), []
        return taken


def new_row(
    request: GenerationRequest,
    handle: RequestHandle,
    tokenizer: TokenDecoder,
    eos_ids: frozenset[int],
    index: int = 0,
) -> Row:
    """Row ``index`` of ``request``, with fresh per-row state (no grammar yet: see :func:`fork`)."""
    params = request.params
    seed = None if params.seed is None else params.seed + index
    return Row(
        request,
        handle,
        IncrementalText(tokenizer, params.stop),
        make_generator(seed),
        RowLogits(params, request.prompt_ids, eos_ids),
        index=index,
        choices=request.n if index == 0 else 1,
    )


def fork(first: Row, tokenizer: TokenDecoder, eos_ids: frozenset[int]) -> list[Row]:
    """The request's ``n`` rows after its prefill: ``first`` and ``n - 1`` new ones, each with its
    own grammar state. The new rows carry no adapter pin yet (the engine takes one per row)."""
    request = first.request
    rows = [first] + [new_row(request, first.handle, tokenizer, eos_ids, i) for i in range(1, request.n)]
    for row in rows:
        row.choices = 1
        row.prefilled, row.cached_tokens = first.prefilled, first.cached_tokens
        row.adapter_key = first.adapter_key
        if request.constraint is not None:
            row.logits = RowLogits(request.params, request.prompt_ids, eos_ids, request.constraint())
    return rows


@torch.inference_mode()
def choose_tokens(logits: torch.Tensor, rows: list[Row], masks: GrammarMasks) -> list[int]:
    """Process every row's logits (``[len(rows), vocab]``) by its rules, sample each row's next
    token, and keep the logprobs the rows asked for (in ``Row.logprobs``)."""
    logits = logits.float().contiguous()  # a copy where it was bf16 or expanded (n choices)
    if any(row.logits.active for row in rows):
        process_rows(logits, [row.logits for row in rows], masks)
        for i in torch.isneginf(logits.max(dim=-1).values).nonzero().flatten().tolist():
            logits[i, rows[i].logits.eos_ids[0]] = 0.0  # a grammar that allows nothing: end the row
    tokens = sample_rows(logits, [r.request.params for r in rows], [r.generator for r in rows])
    wanted = [i for i, r in enumerate(rows) if r.request.params.logprobs is not None]
    tops = [rows[i].request.params.logprobs or 0 for i in wanted]
    for i, (logprob, top) in zip(wanted, token_logprobs(logits, wanted, tokens, tops), strict=True):
        rows[i].logprobs.append(TokenLogprob(tokens[i], logprob, top))
    return tokens
