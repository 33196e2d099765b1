"""Probe recall: which terms of a reference answer a reply must contain, and whether it does.

:func:`key_terms` picks the checkable parts of a reference answer, most specific first: email
addresses, phone numbers, times (``9:30``, ``18:00``, ``5pm``), other numbers (with a unit word
glued on by a hyphen kept whole, e.g. ``5-year``, reduced to the number), runs of capitalised
words that are not at the start of a sentence (names: ``Tomasz Wierzbicki``, ``Pedal Points``),
and, only when there is none of those, rare words (eight letters or more, not common English),
else the three longest content words; only the first 2,000 characters are looked at. A leading ``Yes``/``No``
is never a term: a reply could
match it by chance.

:func:`answer_matches` is the recall rule: a reply matches when it contains ANY of the expected
strings, case-insensitively, as whole words: the character before and after the match must not be
a letter, digit or underscore (so ``12`` matches "12:00" and "12 pounds" but not "120", and
``no`` does not match "not"). Whitespace runs count as one space on both sides.
tests/trainer/handbook_probes.json and the trainer's probe evaluation use this rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_PHONE = r"\+?\d[\d ()-]{6,}\d"
_TIME = r"\b\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\.?)(?!\w)|\b\d{1,2}:\d{2}\b"
_NUMBER = r"\b\d+(?:[.,]\d+)*\b"
_NAME = r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|the\s+|de\s+|van\s+)?[A-Z][\w'-]*)*"
_WORD = r"\b[a-z][a-z-]{7,}\b"
_TERMS = re.compile(
    f"(?P<email>{_EMAIL})|(?P<phone>{_PHONE})|(?P<time>{_TIME})|(?P<number>{_NUMBER})|(?P<name>{_NAME})|(?P<word>{_WORD})"
)
_MAX_ANSWER = 2000  # terms come from the start of a long answer; this bounds the work too
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)$")
_COMMON = frozenset(
    [
        "about",
        "above",
        "across",
        "actually",
        "address",
        "after",
        "again",
        "against",
        "almost",
        "already",
        "although",
        "always",
        "among",
        "another",
        "answer",
        "anyone",
        "anything",
        "around",
        "because",
        "become",
        "before",
        "behind",
        "being",
        "below",
        "between",
        "business",
        "called",
        "cannot",
        "certain",
        "change",
        "children",
        "company",
        "complete",
        "could",
        "customer",
        "customers",
        "different",
        "during",
        "everyone",
        "everything",
        "example",
        "family",
        "following",
        "found",
        "friday",
        "general",
        "however",
        "important",
        "include",
        "included",
        "includes",
        "including",
        "information",
        "instead",
        "interest",
        "little",
        "minutes",
        "monday",
        "morning",
        "nothing",
        "number",
        "obviously",
        "office",
        "opening",
        "others",
        "people",
        "perhaps",
        "person",
        "please",
        "possible",
        "probably",
        "provide",
        "question",
        "really",
        "receive",
        "remember",
        "saturday",
        "should",
        "something",
        "sometimes",
        "special",
        "station",
        "still",
        "sunday",
        "thursday",
        "through",
        "together",
        "tomorrow",
        "tuesday",
        "usually",
        "various",
        "wednesday",
        "whatever",
        "whether",
        "without",
        "would",
        "yesterday",
        "yourself",
    ]
)
_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "each",
        "every",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "here",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "may",
        "more",
        "most",
        "my",
        "new",
        "no",
        "not",
        "of",
        "on",
        "once",
        "only",
        "or",
        "our",
        "out",
        "over",
        "she",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "under",
        "unused",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "would",
        "yes",
        "you",
        "your",
    ]
)


def key_terms(answer: str) -> tuple[str, ...]:
    """Checkable terms of ``answer``, most specific first, without duplicates (see module doc)."""
    found: list[tuple[int, str]] = []
    answer = answer[:_MAX_ANSWER]
    for match in _TERMS.finditer(answer):
        kind, term = match.lastgroup, match.group().strip()
        if kind == "name":
            term = _name(answer, match)
            if not term:
                continue
        elif kind == "word" and term in _COMMON:
            continue
        elif kind == "phone" and sum(c.isdigit() for c in term) < 7:
            for number in re.findall(_NUMBER, term):
                found.append((3, number))
            continue
        found.append((("email", "phone", "time", "number", "name", "word").index(kind or "word"), term))
    if not any(rank < 5 for rank, _ in found):  # no number or name: fall back on plain words
        words = [w for w in re.findall(r"[A-Za-z][a-z-]{3,}", answer) if w.lower() not in _STOPWORDS | _COMMON]
        found += [(6, w) for w in sorted(words, key=len, reverse=True)[:3]]
    else:
        found = [item for item in found if item[0] < 5]
    found.sort(key=lambda item: item[0])
    terms: dict[str, str] = {}
    for _, term in found:
        terms.setdefault(term.lower(), term)
    return tuple(terms.values())


def _name(answer: str, match: re.Match[str]) -> str:
    """The capitalised run of ``match``, minus a sentence-initial first word that is not a name."""
    words = match.group().split()
    if _SENTENCE_START.search(answer[: match.start()]) and (len(words) == 1 or words[0].lower() in _STOPWORDS):
        words = words[1:]  # "On Sundays" -> "Sundays"; a lone capitalised first word is no name
    while words and words[0].lower() in _STOPWORDS:
        words = words[1:]
    return " ".join(words)


def answer_matches(answer: str, expect: Sequence[str]) -> bool:
    """Whether ``answer`` contains any of ``expect`` as whole words, case-insensitively."""
    text = " ".join(answer.split()).lower()
    for term in expect:
        needle = " ".join(term.split()).lower()
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text):
            return True
    return False
