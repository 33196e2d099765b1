"""Questions about a sentence's condition: "If you are in pain, call reception" is the answer to
"What should I do if I am in pain?", and to a customer who just says "I am in pain. What should I do?".

Contract: :func:`condition_templates` finds the sentence's conditions addressed to the reader
(``if``/``when``/``whenever``/``once`` followed by ``you``/``your``..., up to the next comma or
the end of the sentence; a time's colon does not end it), turns each into the customer's first
person (``you are`` -> ``I am``, ``your`` -> ``my``, ``us`` -> ``you``, ...) and returns
question templates about it, with the placeholders of :mod:`trainer.question_rules` (``{at}``).
The caller asks them only where the sentence says what to do in the situation (it opens with the
condition, or is an instruction): "Breakfast is available if you ask" states a requirement.
:func:`leads_with_condition` tells whether a sentence opens with a subordinate clause, so its
grammatical subject is not "if you" (the shallow parse of :mod:`trainer.sentences` would take it
for one).
"""

from __future__ import annotations

import re

_CONDITION = re.compile(
    r"\b(?:if|when|whenever|once)\s+(you(?:r|rs|rself)?\b(?:[^,;:.!?]|(?<=\d)[:.](?=\d))*)", re.IGNORECASE
)
_LEADING = re.compile(r"^(?:if|when|whenever|once|unless|before|after|while|as soon as)\b", re.IGNORECASE)
_PERSON = [
    (r"\byou are\b", "I am"),
    (r"\byou're\b", "I'm"),
    (r"\byou were\b", "I was"),
    (r"\byou've\b", "I've"),
    (r"\byourself\b", "myself"),
    (r"\byours\b", "mine"),
    (r"\byour\b", "my"),
    (r"^you\b", "I"),
    (r"\b(?:and|or) you\b", "and I"),
    (r"\byou\b", "me"),
    (r"\bus\b", "you"),  # the business, to its customer
    (r"\bour\b", "your"),
]
_LONGEST = 12
"""Words of a condition worth asking about; a longer one is a sentence of its own."""


def _first_person(condition: str) -> str:
    """``you need to cancel`` -> ``I need to cancel``, ``your bike is stolen`` -> ``my bike is stolen``."""
    text = " ".join(condition.split())
    for pattern, mine in _PERSON:
        text = re.sub(pattern, mine, text, flags=re.IGNORECASE)
    return text


def leads_with_condition(sentence: str) -> bool:
    """Whether ``sentence`` opens with a subordinate clause (``If ...``, ``When ...``, ``Before ...``)."""
    return bool(_LEADING.match(sentence.strip()))


def condition_templates(sentence: str) -> list[str]:
    """Questions a customer in the sentence's condition would ask (see the module docstring)."""
    out: list[str] = []
    for match in _CONDITION.finditer(sentence):
        mine = _first_person(match.group(1))
        if not 2 <= len(mine.split()) <= _LONGEST:
            continue
        out += [
            f"What should I do if {mine}{{at}}?",
            f"What happens if {mine}?",
            f"What if {mine}?",
            f"{mine[0].upper()}{mine[1:]}. What should I do?",
            f"What do I do when {mine}?",
        ]
    return out
