"""Retrieval-aware training samples (RAFT): questions asked with the passages chat would give.

Contract: :func:`ground_samples` rewrites about ``share`` of the question/answer samples (a user
turn, then the assistant's answer) so the user turn carries passages in the chat-time template
(:func:`adapters.grounding_template.grounded_question`), chosen by the rule chat uses
(:mod:`adapters.grounding_context`):

- **whole mode** (all passages fit ``budget``): every passage in document order, as chat gives a
  small handbook, and never one left out: chat never leaves one out either, and questions over
  the whole handbook with one passage missing taught the 135M model to answer "do not know" to
  most questions (bench/grounding_bench.py);
- **search mode**: the answer's passage among ``distractors`` others from the same documents, in
  document order (as chat orders its hits); with probability ``without_answer`` it is left out
  and the assistant answers :data:`~adapters.grounding_template.NOT_IN_PASSAGES`: the adapter
  learns to answer from the passages and to say when they lack the answer. Chat's search gives
  passages *like* the question, so :data:`HARD_SHARE` of the distractors are hard ones: the
  passages sharing the most words with the question (each word weighted by how rare it is among
  the passages, as BM25 weighs it), the rest at random.

:func:`abstention_samples` adds questions the documents do not answer, asked with the same
passages and answered with :data:`~adapters.grounding_template.NOT_IN_PASSAGES` (the only
abstention whole mode teaches).

The other samples stay as they are, so the adapter still answers with retrieval off. The answer's passage is the one
whose text contains the answer, else the one sharing the most words with it (at least half).
Samples of other shapes (multi-turn conversations) and samples whose answer no passage holds pass
through unchanged. Deterministic by ``seed``. Passages are ``(heading, text)`` pairs in document
order, as :mod:`trainer.passages` cuts a document.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from adapters.grounding_context import fits_whole
from adapters.grounding_template import HEADER, NOT_IN_PASSAGES, grounded_question
from trainer.samples import Sample

_WORD = re.compile(r"\w+")
Passage = tuple[str, str]
HARD_SHARE = 0.5
"""Of a search-mode sample's distractors, the share that are the passages most like the question."""


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 2}


def answer_passage(answer: str, passages: Sequence[Passage]) -> int | None:
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


class Likeness:
    """Passages ranked by the words they share with a question, rare words weighing more."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.words = [_words(f"{heading} {text}") for heading, text in passages]
        seen = Counter(w for words in self.words for w in words)
        self.weight = {w: math.log(1 + len(passages) / n) for w, n in seen.items()}

    def ranked(self, question: str) -> list[int]:
        """The passages sharing any word with ``question``, most alike first."""
        asked = _words(question)
        score = [sum(self.weight[w] for w in asked & words) for words in self.words]
        return sorted((i for i in range(len(score)) if score[i] > 0), key=lambda i: (-score[i], i))


def is_grounded(sample: Sample) -> bool:
    """Whether ``sample``'s last user turn carries passages."""
    users = [m["content"] for m in sample.messages if m["role"] == "user"]
    return bool(users) and users[-1].startswith(HEADER)


def ground_samples(
    samples: Sequence[Sample],
    passages: Sequence[Passage],
    cost: Callable[[Passage], int],
    budget: int,
    *,
    share: float = 0.5,
    distractors: int = 3,
    without_answer: float = 0.15,
    seed: int = 0,
) -> list[Sample]:
    rng = random.Random(seed)
    whole = fits_whole(passages, cost, budget)
    likeness = None if whole else Likeness(passages)
    grounded: list[Sample] = []
    for sample in samples:
        turns = sample.messages
        start = 1 if turns and turns[0]["role"] == "system" else 0
        shaped = len(turns) - start == 2 and turns[start]["role"] == "user" and turns[-1]["role"] == "assistant"
        right = answer_passage(turns[-1]["content"], passages) if shaped else None
        if right is None or rng.random() >= share:
            grounded.append(sample)
            continue
        question, answer = turns[start]["content"], turns[-1]["content"]
        alike = likeness.ranked(question) if likeness is not None else []
        chosen = _chosen(rng, whole, len(passages), right, distractors, alike)
        if not whole and rng.random() < without_answer and len(chosen) > 1:
            chosen.remove(right)
            answer = NOT_IN_PASSAGES
        user = {"role": "user", "content": grounded_question([passages[i] for i in sorted(chosen)], question)}
        grounded.append(replace(sample, messages=[*turns[:start], user, {"role": "assistant", "content": answer}]))
    return grounded


def abstention_samples(
    like: Sample,
    questions: Sequence[str],
    passages: Sequence[Passage],
    cost: Callable[[Passage], int],
    budget: int,
    *,
    count: int,
    distractors: int = 3,
    seed: int = 0,
) -> list[Sample]:
    """Up to ``count`` of ``questions`` (ones the documents do not answer: see
    :mod:`trainer.out_of_scope`) asked with passages chosen as :func:`ground_samples` chooses them
    (whole mode: all of them; search mode: ``distractors`` + 1 at random) and answered
    :data:`~adapters.grounding_template.NOT_IN_PASSAGES`: in whole mode no passage is ever left
    out, so these are the only samples that teach the adapter to say it does not know. Each
    question once, the system turn (if any) of ``like``."""
    rng = random.Random(seed)
    whole = fits_whole(passages, cost, budget)
    system = [m for m in like.messages[:1] if m["role"] == "system"]
    picked = rng.sample(list(questions), min(count, len(questions)))
    samples = []
    for question in picked:
        chosen = _chosen(rng, whole, len(passages), None, distractors + 1)
        user = {"role": "user", "content": grounded_question([passages[i] for i in sorted(chosen)], question)}
        samples.append(Sample([*system, user, {"role": "assistant", "content": NOT_IN_PASSAGES}], fact="(none)"))
    return samples


def _chosen(
    rng: random.Random, whole: bool, count: int, right: int | None, distractors: int, alike: Sequence[int] = ()
) -> list[int]:
    """The passages a grounded sample shows: all of them (whole mode), else ``right`` (if any) and
    ``distractors`` others: the first :data:`HARD_SHARE` of them from ``alike`` (passages like
    the question, most alike first), the rest at random."""
    if whole:
        return list(range(count))
    hard = [i for i in alike if i != right][: math.ceil(distractors * HARD_SHARE)]
    others = [i for i in range(count) if i != right and i not in hard]
    picked = [*hard, *rng.sample(others, min(distractors - len(hard), len(others)))]
    return [*([] if right is None else [right]), *picked]
