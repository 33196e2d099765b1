"""Retrieval-aware training samples (RAFT): each question asked with retrieved-looking passages.

Contract: :func:`ground_samples` rewrites question/answer samples (a user turn, then the
assistant's answer) so the user turn carries passages in the chat-time template
(:func:`adapters.grounding_template.grounded_question`): the passage that holds the answer (the
passage whose text contains the answer, else the one sharing the most words with it) among
``distractors`` others drawn from the same document, in random order; with probability
``without_answer`` the answer's passage is left out and the assistant answers
:data:`~adapters.grounding_template.NOT_IN_PASSAGES` instead. Samples of other shapes (multi-turn
conversations) and samples whose answer no passage holds pass through unchanged. Deterministic by
``seed``. Passages are ``(heading, text)`` pairs, as :mod:`trainer.passages` cuts a document.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace

from adapters.grounding_template import NOT_IN_PASSAGES, grounded_question
from trainer.samples import Sample

_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 2}


def answer_passage(answer: str, passages: Sequence[tuple[str, str]]) -> int | None:
    """The index of the passage that holds ``answer``: containing it whole, else sharing most of
    its words (at least half); None when none does."""
    flat = " ".join(answer.split())
    for i, (_, text) in enumerate(passages):
        if flat and flat in " ".join(text.split()):
            return i
    wanted = _words(answer)
    if not wanted:
        return None
    best = max(range(len(passages)), key=lambda i: len(wanted & _words(passages[i][1])), default=None)
    if best is None or len(wanted & _words(passages[best][1])) * 2 < len(wanted):
        return None
    return best


def ground_samples(
    samples: Sequence[Sample],
    passages: Sequence[tuple[str, str]],
    *,
    distractors: int = 3,
    without_answer: float = 0.2,
    seed: int = 0,
) -> list[Sample]:
    rng = random.Random(seed)
    grounded: list[Sample] = []
    for sample in samples:
        turns = sample.messages
        start = 1 if turns and turns[0]["role"] == "system" else 0
        if len(turns) - start != 2 or turns[start]["role"] != "user" or turns[-1]["role"] != "assistant":
            grounded.append(sample)
            continue
        question, answer = turns[start]["content"], turns[-1]["content"]
        right = answer_passage(answer, passages)
        if right is None:
            grounded.append(sample)
            continue
        others = [i for i in range(len(passages)) if i != right]
        chosen = rng.sample(others, min(distractors, len(others)))
        if rng.random() >= without_answer:
            chosen.append(right)
        else:
            answer = NOT_IN_PASSAGES
        rng.shuffle(chosen)
        user = {"role": "user", "content": grounded_question([passages[i] for i in chosen], question)}
        messages = [*turns[:start], user, {"role": "assistant", "content": answer}]
        grounded.append(replace(sample, messages=messages))
    return grounded
