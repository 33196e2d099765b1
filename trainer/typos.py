"""Questions as customers type them in a hurry: one typo, lower case, sometimes no question mark.

Contract: :func:`misspell` returns ``question`` with one word of :data:`MIN_WORD` letters or more
misspelt (two neighbouring inner letters swapped, an inner letter dropped or doubled, chosen by
``rng``), lower-cased, and without its final ``?`` half the time. Words with a digit or a capital
inside (codes, names such as "McLaren") are left alone; a question with no word to misspell only
loses its capitals. The trainer asks a fact this way once among its phrasings
(:mod:`trainer.questions`), so the adapter learns that a misspelt question means the same fact.
"""

from __future__ import annotations

import random
import re

MIN_WORD = 5
_WORD = re.compile(rf"\b[a-zA-Z][a-z]{{{MIN_WORD - 1},}}\b")


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word) - 2)  # inner letters only: the first and last stay
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and word[at] != word[at + 1]:
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    return word[:at] + word[at] + word[at:]


def misspell(question: str, rng: random.Random) -> str:
    """``question`` typed in a hurry (see the module docstring)."""
    words = list(_WORD.finditer(question))
    typed = question
    if words:
        word = rng.choice(words)
        typed = question[: word.start()] + _typo(word.group(), rng) + question[word.end() :]
    typed = typed.lower()
    return typed[:-1] if typed.endswith("?") and rng.random() < 0.5 else typed
