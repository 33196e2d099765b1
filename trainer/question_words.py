"""The words and patterns question rules match on: business and person nouns, money, times,
phone numbers, e-mail addresses, streets, towns, founding, durations, and the verbs a customer uses.

Data, and :func:`day_names`, which reads weekdays and ranges of them (:mod:`trainer.question_rules`
holds the rules); every pattern is the project's own, never built from input.
"""

from __future__ import annotations

import re

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
BUSINESS_WORDS = set(
    "shop store business company we us you office restaurant cafe salon studio clinic hotel bakery "
    "workshop practice firm team".split()
)
PERSON_WORDS = tuple(
    "mechanic manager owner founder chef director head boss staff doctor teacher coach instructor "
    "assistant receptionist ceo driver baker cook waiter guide agent officer advisor adviser consultant "
    "engineer technician nurse vet dentist lawyer accountant secretary captain leader president chair "
    "trainer host contact person partner expert specialist".split()
)
MONEY = re.compile(r"(?:[£$€]\s?\d[\d,.]*|\b\d[\d,.]*\s?(?:pounds?|euros?|dollars?|gbp|eur|usd|pence|cents?)\b)", re.I)
TIME = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\.?)|\b\d{1,2}:\d{2}\b", re.I)
PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PER = re.compile(r"\b(?:per|a|an|each)\s+(day|hour|week|month|night|year|person|session|lesson)\b", re.I)
WITHIN = re.compile(r"\bwithin\s+(\S+)\s+(days?|weeks?|months?|hours?|years?)\b", re.I)
DURATION = re.compile(r"^(\S+(?:\s+working)?\s+(?:minutes?|hours?|days?|weeks?|months?))\b", re.I)
STREET = re.compile(r"\b\d+\s+[A-Z]\w+\s+(?:Street|St|Road|Rd|Lane|Avenue|Ave|Way|Square|Place|Drive)\b")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
TOWN = re.compile(
    rf"\b(?:in the (?:town|city|village) of|in)\s+(?!(?:{MONTHS}|{'|'.join(DAYS)})\b)([A-Z][\w-]+(?:\s[A-Z][\w-]+)?)"
)
FOUNDED = re.compile(
    r"\b(?:founded|established|opened|started|set up)\b(?:\s+in\s+(\d{4}))?"
    r"(?:.*?\bby\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)*))?"
)
PARTICIPLE = r"(\w+ed|sold|done|taken|given|made|held|kept|paid|run|seen|sent|bought|built|shown|written)"
OBJECT_END = r"\s+(?:only|just|also|on|in|at|from|until|till|before|after|between|by|every|for|within|with|to)\b"
CUSTOMER_ACTIONS = {"sell": "buy"} | {
    verb: verb for verb in "hire rent book order return exchange reserve collect buy".split()
}
TRANSITIVE = set(
    "contain offer sell provide serve stock need require cover use hold earn get give receive bake make teach "
    "repair deliver answer".split()
)


def day_names(text: str) -> list[str]:
    """Weekdays named in ``text``; ``Tuesday to Saturday`` names the days between too."""
    found = [d for d in DAYS if re.search(rf"\b{d}s?\b", text)]
    for first, last in re.findall(rf"\b({'|'.join(DAYS)})s? (?:to|until|till|-|through) ({'|'.join(DAYS)})", text):
        i, j = DAYS.index(first), DAYS.index(last)
        found += [DAYS[k % 7] for k in range(i, j + 1 if j >= i else j + 8)]
    return list(dict.fromkeys(found))
