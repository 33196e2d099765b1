"""Per-row sampling: greedy at temperature 0, else temperature + nucleus (top_p) sampling.

Each row carries its own :class:`torch.Generator`, seeded from the request's ``seed`` when given,
so a seeded request samples the same tokens whatever else shares its batch. The logits arrive
here already processed (:mod:`server.engine.logits_processing`: bias, penalties, grammar);
:func:`token_logprobs` reports log-probabilities of that processed distribution, before
temperature and top_p (as OpenAI's ``logprobs``: what the model thought, given the rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of the sampler and of the stopping rules."""

    max_tokens: int
    """Most tokens to generate."""
    temperature: float = 1.0
    """0 means greedy (argmax)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = None
    """Seed for this row's generator; None draws one."""
    stop: tuple[str, ...] = ()
    """Strings that end the completion (not included in it)."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence tokens until ``max_tokens`` (benchmarks: fixed lengths)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it was generated (OpenAI's, -2..2)."""
    presence_penalty: float = 0.0
    """Subtracted from a token's logit once it was generated at all (OpenAI's, -2..2)."""
    repetition_penalty: float = 1.0
    """Divides positive (multiplies negative) logits of tokens in the prompt or the output (vLLM's, HF's)."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits; -100 bans a token, 100 all but forces it."""
    min_tokens: int = 0
    """End-of-sequence is masked until this many tokens were generated (vLLM's)."""
    logprobs: int | None = None
    """None: no logprobs; k >= 0: the sampled token's logprob and the k most likely alternatives."""
    prompt_logprobs: int | None = None
    """None: none; k >= 0: each prompt token's logprob and k alternatives (turns off prefix-cache reuse)."""

    @property
    def processes_logits(self) -> bool:
        """Whether any processor other than a grammar touches this row's logits."""
        return bool(
            self.frequency_penalty
            or self.presence_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
            or self.min_tokens
        )


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator (sampling runs on CPU copies of the logits, see :func:`sample_rows`)."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    return generator


def _sample_one(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    scaled = logits / params.temperature
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cumulative = torch.cumsum(probs, dim=-1)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop = (cumulative - probs) >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        choice = torch.multinomial(torch.softmax(sorted_logits, dim=-1), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))


def sample_rows(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]) -> list[int]:
    """Pick the next token for every row of ``logits`` ([batch, vocab], float32)."""
    greedy = logits.argmax(dim=-1).tolist()
    if all(p.temperature == 0 for p in params):
        return greedy
    # Sampling uses per-row CPU generators so seeded rows reproduce on any device.
    host = logits.cpu()
    return [greedy[i] if p.temperature == 0 else _sample_one(host[i], p, generators[i]) for i, p in enumerate(params)]


def token_logprobs(logits: torch.Tensor, rows: list[int], tokens: list[int], tops: list[int]) -> list[LogprobRow]:
    """For each listed row: the chosen token's logprob and the ``tops[i]`` best (token, logprob)."""
    if not rows:
        return []
    index = torch.tensor(rows, device=logits.device)
    logp = torch.log_softmax(logits.index_select(0, index), dim=-1)
    chosen = logp.gather(1, torch.tensor([[tokens[r]] for r in rows], device=logits.device)).squeeze(1).tolist()
    k = max(tops)
    best_values, best_ids = logp.topk(k, dim=-1) if k else (logp[:, :0], logp[:, :0].long())
    values, ids = best_values.tolist(), best_ids.tolist()
    return [
        (float(chosen[i]), tuple(zip(ids[i][: tops[i]], values[i][: tops[i]], strict=True))) for i in range(len(rows))
    ]


LogprobRow = tuple[float, tuple[tuple[int, float], ...]]
"""A token's logprob and its best alternatives."""
