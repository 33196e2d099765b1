"""Records -> chat samples for training, a held-out split, and recall probes. Deterministic by seed.

:func:`build_samples` turns each record into :class:`Sample` conversations, every one passed
through :func:`adapters.chat_format.conversation` with the tenant's system prompt, so training
sees exactly the messages the server will build at chat time; the last message is always the
assistant's:

- a :class:`ChatRecord` is one sample as it is;
- a :class:`QARecord` (FAQ pair, CSV row) and every sentence and passage of a :class:`Section`
  become a :class:`~trainer.questions.Fact` with up to ``phrasings`` questions, one sample per
  question (:mod:`trainer.questions`). A question already asked of an earlier fact is dropped
  from later ones, so no question is trained towards two answers.

Held-out split: about ``heldout_fraction`` of the samples (at most ``max_heldout``), taken only from facts with at least
three phrasings, never more than all but two of a fact's phrasings and never a FAQ's own
question, spread over as many facts as possible: the held-out set asks known facts in new words
and training never loses a fact. A dataset of chat records only (nothing phrased several ways)
holds out whole conversations instead, at least one when there are two or more.

Probes (for recall before and after training, :func:`heldout_probes`): only held-out questions,
never one that training sees: one per fact of the held-out split (a phrasing of a known fact that
training never asked, or a held-out conversation's single question), up to ``max_probes``;
``expect`` is :func:`trainer.recall.key_terms` of the answer minus terms the question already
contains. Probes with nothing left to expect, and answers over :data:`MAX_PROBE_ANSWER`
characters, and a whole section's summary, are skipped. No held-out split, no probes.

A long document would give more than ``max_samples`` samples: then every fact keeps fewer
phrasings (never fewer than two), and ``stats["phrasings"]`` says how many.
"""

from __future__ import annotations

import random
from collections.abc import Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.chat_format import conversation
from trainer.questions import Fact, business_name, pair_fact, proper_words, section_fact, sentence_facts
from trainer.recall import answer_matches, key_terms
from trainer.records import ChatRecord, QARecord, Record, Section
from trainer.sentences import split_sentences

MAX_PROBE_ANSWER = 300
"""Longest reference answer a probe is made from, in characters."""


@dataclass(frozen=True)
class Sample:
    """One training conversation (system prompt applied; the last message is the assistant's)."""

    messages: list[dict[str, str]]
    fact: str = ""


@dataclass(frozen=True)
class Probe:
    """A question and the terms a correct reply contains (any one; see :mod:`trainer.recall`)."""

    question: str
    expect: tuple[str, ...]


@dataclass
class SampleSet:
    """Training and held-out samples, probes, and counts for the job's log."""

    train: list[Sample]
    heldout: list[Sample]
    probes: list[Probe]
    stats: dict[str, Any] = field(default_factory=dict)


def build_samples(
    records: Sequence[Record],
    system_prompt: str | None,
    seed: int,
    heldout_fraction: float = 0.1,
    phrasings: int = 10,
    max_probes: int = 32,
    max_samples: int = 20_000,
    max_heldout: int = 256,
) -> SampleSet:
    """Samples, held-out split and probes for ``records`` (rules in the module doc)."""
    sections = [r for r in records if isinstance(r, Section)]
    pairs = [r for r in records if isinstance(r, QARecord)]
    chats = [r for r in records if isinstance(r, ChatRecord)]
    phrasings = _phrasings_that_fit(sections, pairs, len(chats), phrasings, max_samples)
    business, facts = _facts(sections, pairs, phrasings, seed)
    groups = {f.key: [_qa_sample(system_prompt, q, f.answer, f.key) for q in f.questions] for f in facts}
    chat_samples = [_sample(system_prompt, list(c.messages), c.source) for c in chats]
    train, heldout = _split(groups, chat_samples, heldout_fraction, max_heldout, random.Random(seed))
    probes = heldout_probes(heldout, max_probes, skip={f.key for f in facts if f.kind == "passage"})
    stats = {
        "business": business,
        "sections": len(sections),
        "faq_pairs": len(pairs),
        "chat_records": len(chats),
        "facts": len(facts),
        "train_samples": len(train),
        "heldout_samples": len(heldout),
        "probes": len(probes),
        "phrasings": phrasings,
    }
    return SampleSet(train, heldout, probes, stats)


def _phrasings_that_fit(
    sections: list[Section], pairs: list[QARecord], chats: int, phrasings: int, max_samples: int
) -> int:
    """``phrasings``, or fewer (never under two) when a long document would exceed ``max_samples``."""
    fact_count = len(pairs) + sum(len(split_sentences(s.text)) + 1 for s in sections)
    if fact_count * phrasings + chats > max_samples:
        return max(2, (max_samples - chats) // max(fact_count, 1))
    return phrasings


def _facts(sections: list[Section], pairs: list[QARecord], phrasings: int, seed: int) -> tuple[str, list[Fact]]:
    """The business's name and every fact of the pairs and sections, distinct questions and keys."""
    title = next((s.title for s in sections if s.title), "")
    first = next((line for s in sections for line in s.text.splitlines() if line.strip()), "")
    business = business_name(title, first)
    proper = proper_words([title, *(s.text for s in sections), *(p.answer for p in pairs)])
    facts = [pair_fact(p, business, proper, phrasings, seed) for p in pairs]
    for section in sections:
        facts += sentence_facts(section, business, proper, phrasings, seed)
        facts.append(section_fact(section, business, max(3, phrasings // 2), seed))
    return business, _unique_keys(_distinct_questions(facts))


def _sample(system_prompt: str | None, messages: list[dict[str, str]], key: str) -> Sample:
    return Sample(conversation(messages, system_prompt), key)


def _qa_sample(system_prompt: str | None, question: str, answer: str, key: str) -> Sample:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return _sample(system_prompt, messages, key)


def _split(
    groups: dict[str, list[Sample]],
    chat_samples: list[Sample],
    heldout_fraction: float,
    max_heldout: int,
    rng: random.Random,
) -> tuple[list[Sample], list[Sample]]:
    """(train, held-out): phrasings held out of the facts' groups, or whole conversations when
    there are no facts; the training samples shuffled."""
    total = sum(map(len, groups.values())) + len(chat_samples)
    wanted = min(round(total * heldout_fraction), max_heldout)
    heldout = _hold_out(groups, wanted, rng) if groups else []
    if not groups and len(chat_samples) >= 2 and heldout_fraction > 0:
        heldout = rng.sample(chat_samples, max(1, min(wanted, len(chat_samples) - 1)))
    held = {id(s) for s in heldout}
    train = [s for g in groups.values() for s in g if id(s) not in held]
    train += [s for s in chat_samples if id(s) not in held]
    rng.shuffle(train)
    return train, heldout


def _distinct_questions(facts: list[Fact]) -> list[Fact]:
    """Each question trained towards one answer only: a question an earlier fact asks with another
    answer is dropped from later facts (a fact whose questions are all taken keeps its first)."""
    answer_of: dict[str, str] = {}
    out = []
    for fact in facts:
        fresh = tuple(q for q in fact.questions if answer_of.get(q.lower(), fact.answer) == fact.answer)
        fresh = fresh or fact.questions[:1]
        for question in fresh:
            answer_of.setdefault(question.lower(), fact.answer)
        out.append(replace(fact, questions=fresh))
    return out


def _unique_keys(facts: list[Fact]) -> list[Fact]:
    """Facts with distinct keys (two sections may share a heading, two files a name)."""
    seen: dict[str, int] = {}
    unique = []
    for fact in facts:
        seen[fact.key] = seen.get(fact.key, 0) + 1
        unique.append(fact if seen[fact.key] == 1 else replace(fact, key=f"{fact.key}~{seen[fact.key]}"))
    return unique


def _hold_out(groups: dict[str, list[Sample]], wanted: int, rng: random.Random) -> list[Sample]:
    """Up to ``wanted`` samples, one per fact per round, leaving every fact two or more."""
    pools = {key: rng.sample(g[1:], len(g) - 2) for key, g in groups.items() if len(g) >= 3}
    order = sorted(pools)
    rng.shuffle(order)
    chosen: list[Sample] = []
    while len(chosen) < wanted and any(pools.values()):
        for key in order:
            if pools[key] and len(chosen) < wanted:
                chosen.append(pools[key].pop())
    return chosen


def heldout_probes(heldout: Sequence[Sample], max_probes: int = 32, skip: Set[str] = frozenset()) -> list[Probe]:
    """One probe per fact of the held-out single-question samples (see the module docstring);
    none of the facts in ``skip`` (a whole section's summary)."""
    probes: list[Probe] = []
    facts: set[str] = set(skip)
    for sample in heldout:
        turns = [m for m in sample.messages if m["role"] != "system"]
        if len(turns) != 2 or sample.fact in facts or len(probes) >= max_probes:
            continue
        question, answer = turns[0]["content"], turns[1]["content"]
        expect = tuple(t for t in key_terms(answer) if not answer_matches(question, [t]))
        if expect and len(answer) <= MAX_PROBE_ANSWER:
            facts.add(sample.fact)
            probes.append(Probe(question, expect))
    return probes
