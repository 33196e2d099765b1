"""Log-probabilities of a prompt's own tokens (text completions' ``echo`` with ``logprobs``).

Contract: :func:`prompt_logprobs` takes the logits of every position of one prefill chunk
(positions ``start`` to ``stop - 1`` of ``prompt``) and returns, for each prompt token that chunk
predicts, its log-probability and the ``top`` best alternatives; the prompt's first token has
nothing before it and gets NaN (written ``null``). Evaluation harnesses score answers this way.
Chunk by chunk, so memory is ``prefill_chunk × vocabulary`` floats, never the whole prompt's.
"""

from __future__ import annotations

import math

import torch

from server.engine.requests import TokenLogprob


def prompt_logprobs(logits: torch.Tensor, prompt: list[int], start: int, stop: int, top: int) -> list[TokenLogprob]:
    """Entries for the prompt tokens at ``start + 1 .. stop`` (and the first token when ``start == 0``)."""
    entries = [TokenLogprob(prompt[0], math.nan)] if start == 0 else []
    targets = prompt[start + 1 : stop + 1]
    if not targets:
        return entries
    logp = torch.log_softmax(logits[: len(targets)].float(), dim=-1)
    ids = torch.tensor(targets, device=logp.device).unsqueeze(1)
    chosen = logp.gather(1, ids).squeeze(1).tolist()
    if top:
        values, best = logp.topk(top, dim=-1)
        alternatives = [tuple(zip(b, v, strict=True)) for b, v in zip(best.tolist(), values.tolist(), strict=True)]
    else:
        alternatives = [() for _ in targets]
    entries += [TokenLogprob(t, lp, alt) for t, lp, alt in zip(targets, chosen, alternatives, strict=True)]
    return entries
