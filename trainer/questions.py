"""Prose and FAQ pairs -> facts, each with several differently phrased questions. Deterministic.

A :class:`Fact` is one answer and the questions it answers:

- every sentence of a :class:`~trainer.records.Section` is a fact whose answer is the sentence
  itself; its questions come from :mod:`trainer.question_rules` (pattern questions first, then
  catch-all ones), so every sentence is asked about at least a few ways;
- the section as a whole is a fact (answer: the passage, its whole sentences up to
  :data:`MAX_PASSAGE` characters) asked from its heading path ("Tell me about opening hours",
  "What should I know about bike hire at Lumen Lane?");
- an FAQ pair is a fact whose questions are the original question, rewrites of it (``Do you``
  -> ``Does <business>``, synonyms, with and without the business name) and the pattern
  questions of its answer.

Each template is filled without and with the business name (``at Lumen Lane Bicycles``, ``at
Lumen Lane``) and with a synonym swapped in (bike/bicycle, hire/rent, programme/scheme, ...).
:func:`business_name` finds the name from the document title. Which ``phrasings`` of all the
candidates a fact keeps is drawn with ``random.Random(seed)`` per fact: specific questions
before catch-all ones, and within each, plain forms and forms with the business name or a
synonym taking turns; a fact asked four ways or more has its last one typed as a customer in a
hurry would (:mod:`trainer.typos`: one typo, lower case). A sentence about what to do in a
situation ("If you are in pain, call us") is also asked from that situation ("What should I do if
I am in pain?", "I am in pain. What should I do?": :mod:`trainer.condition_questions`). The same
records and seed always give the same questions.

The template rules live in :mod:`trainer.question_rules`; sentence parsing in
:mod:`trainer.sentences`.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import zip_longest

from trainer.condition_questions import condition_templates, leads_with_condition
from trainer.question_rules import Phrases, predicate_templates
from trainer.records import QARecord, Section
from trainer.sentence_questions import generic_templates, sentence_templates
from trainer.sentences import MAX_SENTENCE, Clause, parse, split_sentences
from trainer.typos import misspell

_GENERIC_TITLE_WORDS = re.compile(
    r"\b(?:customer|customers|staff|employee|user|visitor|guest)?\s*"
    r"(?:handbook|guide|manual|faq|faqs|information|info|brochure|leaflet|policies|policy|welcome pack|overview)\b",
    re.IGNORECASE,
)
_SYNONYMS = [
    ("bicycles", "bikes"),
    ("bicycle", "bike"),
    ("bikes", "bicycles"),
    ("bike", "bicycle"),
    ("hired", "rented"),
    ("hire a", "rent a"),
    ("hire", "rental"),
    ("programme", "scheme"),
    ("program", "scheme"),
    ("shop", "store"),
    ("second-hand", "used"),
    ("phone", "telephone"),
    ("price", "cost"),
    ("purchase", "buy"),
    ("buy", "purchase"),
    ("cheque", "check"),
    ("lessons", "classes"),
    ("repairs", "fixes"),
    ("dog", "pet"),
    ("email", "e-mail"),
    ("how much is", "what is the price of"),
    ("what time", "when"),
    ("opening hours", "hours"),
]
_GENERIC_PHRASINGS = 4
_TYPED_FROM = 4
"""A fact asked this many ways or more is asked once with a typo (:func:`trainer.typos.misspell`)."""
MAX_PASSAGE = 1200
_PRONOUNS = {"it", "this", "that", "they", "these", "those", "he", "she", "there", "here"}
_NOT_SUBJECTS = {"please", "always", "never", "just", "simply", "do", "don't"}
"""First words of imperative sentences, which the shallow parse would take for their subject."""


@dataclass(frozen=True)
class Fact:
    """One answer and the questions (already phrased) it answers; ``key`` identifies the fact.

    ``kind``: ``sentence`` (a sentence some pattern asks about), ``generic`` (a sentence only the
    catch-all questions fit, asked fewer ways), ``passage`` (a whole section) or ``faq``.
    """

    key: str
    answer: str
    questions: tuple[str, ...]
    kind: str


def business_name(title: str, first_sentence: str = "") -> str:
    """The business a title names: ``Lumen Lane Bicycles — Customer Handbook`` -> ``Lumen Lane
    Bicycles``; for a title without a name, the capitalised subject of the document's first
    sentence (``Lumen Lane Bicycles is a ...``)."""
    parts = [p.strip() for p in re.split(r"\s+[-\u2013\u2014|:]\s+|:\s+", title) if p.strip()]
    for part in parts:
        name = _GENERIC_TITLE_WORDS.sub("", part).strip(" -:|,")
        name = re.sub(r"^(?:welcome to|about)\s+", "", name, flags=re.IGNORECASE).strip()
        name = re.sub(r"\b(?:the|of|for)$", "", name, flags=re.IGNORECASE).strip()
        if name:
            return name
    named = re.match(r"^((?:[A-Z][\w&'.-]*\s+){1,4})(?:is|are)\b", first_sentence)
    if not named or named.group(1).split()[0].lower() in _PRONOUNS | {"we", "our", "the", "you", "a", "an"}:
        return ""
    return named.group(1).strip()


def proper_words(texts: list[str]) -> set[str]:
    """Capitalised words that also occur capitalised inside a sentence: names, not sentence starts."""
    found: set[str] = set()
    for text in texts:
        found.update(re.findall(r"(?<![.!?:\n]\s)(?<!^)(?<=\s)([A-Z][\w'-]+)", text))
    return found


def _names(business: str) -> tuple[str, ...]:
    """Ways to say the business: the full name and, for three words or more, the first ones."""
    words = business.split()
    return (business, " ".join(words[:-1])) if len(words) >= 3 else (business,) if business else ()


def _fill(template: str, business: str) -> list[str]:
    """``template`` filled once per way of naming the business (``at ...`` once empty too)."""
    names = _names(business)
    if not names:
        names = ("the business",)
        template = template.replace("{at}", "")
    filled: list[str] = []
    for index, name in enumerate(names):
        at_forms = ["", f" at {name}"] if "{at}" in template else [""]
        for at in at_forms if index == 0 or "{at}" not in template else at_forms[1:]:
            possessive = f"{name}'" if name.endswith("s") else f"{name}'s"
            question = template.replace("{at}", at).replace("{biz_s}", possessive).replace("{biz}", name)
            filled.append(question.replace("..", "."))
    return filled


def _same_case(word: str) -> Callable[[re.Match[str]], str]:
    """A replacement that writes ``word`` capitalised where the match was."""
    return lambda match: word if match.group()[0].islower() else word.capitalize()


def _synonym(question: str) -> str | None:
    """``question`` with its first word that has a synonym swapped (placeholders untouched)."""
    for word, other in _SYNONYMS:
        pattern = re.compile(rf"(?<![{{\w]){re.escape(word)}\b", re.IGNORECASE)
        if pattern.search(question):
            return pattern.sub(_same_case(other), question, count=1)
    return None


def _choose(key: str, tiers: list[tuple[list[str], ...]], phrasings: int, seed: int) -> tuple[str, ...]:
    """``phrasings`` questions, tier by tier; within a tier its lanes (e.g. plain forms and forms
    with the business name) take turns, each lane shuffled by seed. No duplicates."""
    rng = random.Random(zlib.crc32(f"{seed}:{key}".encode()))
    chosen: dict[str, str] = {}
    for tier in tiers:
        lanes = []
        for lane in tier:
            lane = list(dict.fromkeys(q[0].upper() + q[1:] for q in lane if q))
            rng.shuffle(lane)
            lanes.append(lane)
        for question in (q for turn in zip_longest(*lanes) for q in turn if q is not None):
            if len(chosen) >= phrasings:
                break
            chosen.setdefault(question.lower(), question)
    questions = tuple(chosen.values())
    if len(questions) >= _TYPED_FROM:  # the last (least specific) one as a customer types it
        questions = (*questions[:-1], misspell(questions[-1], rng))
    return questions


def _expand(templates: list[str], business: str) -> tuple[list[str], list[str]]:
    """First forms (one per template) and the other forms (business name, synonyms)."""
    first: list[str] = []
    more: list[str] = []
    for template in dict.fromkeys(templates):
        forms = _fill(template, business)
        first.append(forms[0])
        more += forms[1:]
        if other := _synonym(template):
            more += _fill(other, business)[:2]
    return first, more


def _pattern_templates(
    sentence: str, business: str, proper: set[str], topic: str = ""
) -> tuple[Clause, Phrases, list[str]]:
    """The parse of ``sentence`` and the templates its patterns give (sentence-wide, then per
    predicate). A pronoun subject ("It is called Pedal Points") stands for ``topic`` (the section
    heading); without a topic its predicates are not asked about."""
    clause = parse(sentence, proper)
    subordinate = leads_with_condition(sentence) or sentence.split(maxsplit=1)[0].lower() in _NOT_SUBJECTS
    if subordinate:  # "If you ..., call us": no subject to ask about; the section's topic stands in
        clause = parse(topic, proper) if topic else replace(clause, subject="", head="", predicates=())
    elif clause.head.lower() in _PRONOUNS and topic:
        clause = parse(re.sub(r"^(?:yes|no)?[,.!]?\s*\w+", topic, sentence, count=1, flags=re.IGNORECASE), proper)
    phrases = Phrases(clause, business)
    # A condition is a customer's situation where the sentence says what to do in it (it opens the
    # sentence, or the sentence is an instruction); "X is available if you ask" is a requirement.
    templates = sentence_templates(sentence) + (condition_templates(sentence) if subordinate else [])
    if clause.head.lower() not in _PRONOUNS and not subordinate:
        for verb, rest in clause.predicates:
            templates += predicate_templates(clause, verb, rest, phrases)
    return clause, phrases, templates


def sentence_facts(section: Section, business: str, proper: set[str], phrasings: int, seed: int) -> list[Fact]:
    """One fact per sentence of ``section`` (see the module doc)."""
    facts: list[Fact] = []
    for index, sentence in enumerate(split_sentences(section.text)):
        clause, phrases, specific = _pattern_templates(sentence, business, proper, _topic(section))
        first, more = _expand(specific, business)
        generic = generic_templates(clause, phrases) if clause.head else []  # no subject, no topic: none
        generic_first, generic_more = _expand(generic, business)
        key = f"{section.source}#{'/'.join(section.headings)}#{index}"
        kind = "sentence" if specific else "generic"
        count = phrasings if specific else min(phrasings, _GENERIC_PHRASINGS)
        questions = _choose(key, [(first, more), (generic_first, generic_more)], count, seed)
        facts.append(Fact(key, sentence, questions, kind))
    return facts


def _topic(section: Section) -> str:
    """The section's last heading as a noun phrase: ``Loyalty programme`` -> ``the loyalty programme``."""
    if not section.headings or not section.headings[-1].split():
        return ""
    topic = " ".join(section.headings[-1].split()).rstrip("?:.")
    topic = topic if topic.split()[0] in section.title.split() else topic[0].lower() + topic[1:]
    return topic if re.search(r"s\b|\band\b|^[A-Z]", topic) else f"the {topic}"


def section_fact(section: Section, business: str, phrasings: int, seed: int) -> Fact:
    """The passage as an answer to questions about its heading path (or the business, at the top)."""
    if topic := _topic(section):
        templates = [
            f"Tell me about {topic}{{at}}.",
            f"What can you tell me about {topic}{{at}}?",
            f"What should I know about {topic}{{at}}?",
            f"Can you explain {topic}{{at}}?",
            f"Give me the details on {topic}{{at}}.",
            f"What is the information on {topic}{{at}}?",
        ]
        templates += [f"What about {part.strip()}{{at}}?" for part in re.split(r"\band\b|&|,", topic) if part.strip()]
    else:
        templates = [
            "Tell me about {biz}.",
            "What can you tell me about {biz}?",
            "Give me an overview of {biz}.",
            "Who are {biz}?",
            "What is {biz}?",
        ]
    first, more = _expand(templates, business)
    key = f"{section.source}#{'/'.join(section.headings)}#passage"
    return Fact(key, _passage(section.text), _choose(key, [(first, more)], phrasings, seed), "passage")


def _passage(text: str) -> str:
    """The section as one answer: whole sentences up to :data:`MAX_PASSAGE` characters."""
    kept: list[str] = []
    for sentence in split_sentences(text):
        if kept and sum(len(s) + 1 for s in kept) + len(sentence) > MAX_PASSAGE:
            break
        kept.append(sentence)
    return " ".join(kept) or " ".join(text.split())[:MAX_PASSAGE]


def pair_fact(pair: QARecord, business: str, proper: set[str], phrasings: int, seed: int) -> Fact:
    """An FAQ pair with rewrites of its question and the pattern questions of its answer."""
    question = pair.question
    rewrites = [question]
    if business and len(question) <= MAX_SENTENCE:
        rewrites += [re.sub(r"\?$", "{at}?", question)]
        rewrites += [
            re.sub(r"^Do you\b", "Does {biz}", question),
            re.sub(r"^Which (.+) do you (\w+)\?$", r"Which \1 does {biz} \2?", question),
            re.sub(r"^Can I (.+)\?$", r"Am I allowed to \1{at}?", question),
            re.sub(r"^Can I (.+)\?$", r"Is it possible to \1{at}?", question),
            re.sub(r"^Do you (.+)\?$", r"Is it true that you \1?", question),
        ]
    first, more = _expand(rewrites, business)
    pattern = [
        t for sentence in split_sentences(pair.answer) for t in _pattern_templates(sentence, business, proper)[2]
    ]
    pattern_first, pattern_more = _expand(pattern, business)
    key = f"{pair.source}#faq#{pair.question}"
    tiers = [([question],), (first, pattern_first, more, pattern_more)]
    return Fact(key, pair.answer, _choose(key, tiers, phrasings, seed), "faq")
