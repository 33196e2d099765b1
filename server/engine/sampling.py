"""Per-row sampling: greedy at temperature 0, else temperature + nucleus (top_p) sampling.

Each row carries its own :class:`torch.Generator`, seeded from the request's ``seed`` when given,
so a seeded request samples the same tokens whatever else shares its batch.
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
    """Pick the next token for every row of ``logits`` ([batch, vocab])."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1).tolist()
    if all(p.temperature == 0 for p in params):
        return greedy
    # Sampling uses per-row CPU generators so seeded rows reproduce on any device.
    host = logits.cpu()
    return [greedy[i] if p.temperature == 0 else _sample_one(host[i], p, generators[i]) for i, p in enumerate(params)]
