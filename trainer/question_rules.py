"""Sentence patterns -> question templates: the rules that turn one fact into many questions.

Each rule looks at one predicate of a parsed sentence (:class:`~trainer.sentences.Clause`) and
returns question templates for it, most natural first. Templates may hold three placeholders,
filled by :mod:`trainer.questions`: ``{at}`` (``""`` or `` at <business>``), ``{biz}`` (the
business's name) and ``{biz_s}`` (its possessive). The answer to every question a rule makes is
the sentence itself, so a rule only has to ask something the sentence answers.

Rules (:data:`RULES`): prices, names (``is called``), places, opening hours and closing days,
times of day, points and vouchers, what something includes, durations, warranties, deadlines
(``within 30 days``), deposits, payment methods, weekdays, availability and permission, and
parking; where those find little, :data:`FALLBACK_RULES` ask about passives (``are
delivered``, ``must be ordered``) and objects (``What do the breads contain?``).
:mod:`trainer.sentence_questions` asks about contact details, founding and the town from the
whole sentence, and adds catch-all questions so every sentence is asked about.
The words and patterns the rules match on are :mod:`trainer.question_words`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from trainer.question_words import (
    BUSINESS_WORDS,
    CUSTOMER_ACTIONS,
    DURATION,
    MONEY,
    OBJECT_END,
    PARTICIPLE,
    PER,
    PERSON_WORDS,
    STREET,
    TIME,
    TRANSITIVE,
    WITHIN,
    day_names,
)
from trainer.sentences import Clause, article, base_form, singular


class Phrases:
    """The noun-phrase forms of one clause's subject that templates need."""

    def __init__(self, clause: Clause, business: str) -> None:
        words = clause.subject.split()
        if words and words[0].lower() in ("our", "your", "its", "their", "this", "these"):
            words[0] = "the"
        elif words and words[0].lower() in ("every", "each", "any"):
            words[0] = "a" if clause.head[:1].lower() not in "aeiou" else "an"
        self.np = " ".join(words)
        self.is_business = clause.head.lower() in BUSINESS_WORDS or clause.subject == business
        self.plural = clause.plural
        self.head = clause.head
        self.the = self.head if self.plural or self.head[:1].isupper() else f"the {self.head}"
        self.one = article(singular(self.head)) if self.plural else self.np
        self.does = "do" if self.plural else "does"
        self.is_ = "are" if self.plural else "is"
        if self.is_business:
            self.np = self.the = self.one = "{biz}"
            self.does, self.is_ = "does", "is"
        self.Is = self.is_.capitalize()


@dataclass(frozen=True)
class Predicate:
    """One predicate of a clause with what rules ask about: the verb's bare form, its object (the
    words up to the first preposition), a passive participle and the action it names."""

    clause: Clause
    verb: str
    rest: str
    p: Phrases
    at: str
    participle: str | None
    action: str | None
    obj: str


_MODALS = {"can", "will", "may", "must", "should", "could", "might"}


def _predicate(clause: Clause, verb: str, rest: str, p: Phrases) -> Predicate:
    passive = re.match(rf"^be\s+{PARTICIPLE}\b", rest)
    after_be = re.match(rf"^{PARTICIPLE}\b", rest) if verb in ("is", "are") else None
    done = passive or after_be
    participle = done.group(1) if done else None
    obj = "" if verb in ("is", "are") else re.split(OBJECT_END, f" {rest}")[0].strip()
    obj = obj if len(obj.split()) <= 4 and not re.search(r"\d", obj) else ""
    return Predicate(
        clause,
        verb,
        rest,
        p,
        "" if p.is_business else "{at}",
        participle,
        base_form(participle) if participle else None,
        obj,
    )


def _prices(q: Predicate) -> list[str]:
    np, the, one, does, is_, at = q.p.np, q.p.the, q.p.one, q.p.does, q.p.is_, q.at
    money = MONEY.search(q.rest)
    if (
        not money
        or not (
            q.verb in ("cost", "costs", "charge", "charges")
            or re.match(r"^(?:only |just |about |from )?$", q.rest[: money.start()])  # "Tickets are 5 euros"
            or re.search(r"\bfor (?:only |just )?$", q.rest[: money.start()])  # "can be hired for 25 pounds"
        )
    ):
        return []
    out = [
        f"How much {does} {np} cost{at}?",
        f"What is the price of {the}{at}?",
        f"How much {is_} {np}{at}?",
        f"What {does} {np} cost{at}?",
        f"How much do I pay for {one}{at}?",
        f"How much do you charge for {one}?",
        f"How expensive {is_} {np}{at}?",
    ]
    if q.action and not q.p.is_business:
        out += [f"How much does it cost to {q.action} {one}{at}?", f"What does it cost to {q.action} {one}{at}?"]
    if per := PER.search(q.rest):
        unit = per.group(1).lower()
        out += [f"How much {is_} {np} per {unit}{at}?", f"What does one {unit} of {singular(q.p.head)} cost{at}?"]
    return out


def _names(q: Predicate) -> list[str]:
    the, at = q.p.the, q.at
    if q.verb not in ("is", "are") or not re.match(r"^(?:called|named|known as)\b", q.rest):
        return []
    out = [f"What is {the} called{at}?", f"What is the name of {the}{at}?", f"What's {the} called?"]
    if any(word in q.p.head.lower().split() for word in PERSON_WORDS):
        return out + [f"Who is {the}{at}?", f"Who is {{biz_s}} {singular(q.p.head)}?", f"Who works as {the}{at}?"]
    return out + [f"What is {{biz_s}} {q.p.head} called?", f"What name does {the} have?"]


def _places(q: Predicate) -> list[str]:
    if q.verb not in ("is", "are") or not re.match(
        r"^(?:located\s+)?(?:at|on|near|next to|opposite|behind|beside|in)\b", q.rest
    ):
        return []
    out = [
        f"Where {q.p.is_} {q.p.np}{q.at}?",
        f"Where {q.p.is_} {q.p.np} located?",
        f"Where can I find {q.p.the}{q.at}?",
    ]
    if q.p.is_business or STREET.search(q.rest):
        out += [
            "What is the address of {biz}?",
            "What is {biz_s} street address?",
            "Where are you located?",
            "Which street is {biz} on?",
            "How do I find {biz}?",
        ]
    return out


def _hours(q: Predicate) -> list[str]:
    np, is_ = q.p.np, q.p.is_
    out: list[str] = []
    if re.match(r"^open\b", q.rest) or q.verb in ("opens", "open"):
        out += [
            f"When {is_} {np} open?",
            "What are {biz_s} opening hours?",
            f"What time does {np} open?",
            f"What time does {np} close?",
            f"Which days {is_} {np} open?",
            "What are the opening hours{at}?",
            "When can I visit {biz}?",
        ]
        out += [f"Is {np} open on {day}s?" for day in day_names(q.rest)]
    if re.match(r"^closed\b", q.rest):
        out += [f"When {is_} {np} closed?", f"Which days {is_} {np} closed?", f"{q.p.Is} {np} open every day?"]
        out += [f"Is {np} open on {day}{s}?" for day in day_names(q.clause.sentence) for s in ("", "s")]
    return out


def _times(q: Predicate) -> list[str]:
    time = TIME.search(q.rest)
    if not time or re.match(r"^(?:open|closed)\b", q.rest):
        return []
    np, at, part = q.p.np, q.at, _asked(q)
    out = [f"When {part}{at}?", f"What time {part}?"]
    if re.search(r"\b(?:before|until|till|by)\s+" + re.escape(time.group()), q.rest):
        out += [
            f"Until what time {part}{at}?",
            f"What is the latest time {np} {q.verb} {q.obj}".strip() + "?",
        ]
    return out


def _asked(q: Predicate) -> str:
    """The predicate turned into a question's word order: ``is breakfast served``, ``must rooms be
    vacated``, ``is check-in`` (a bare copula), ``does the shop open``."""
    np = q.p.np
    if q.verb in _MODALS:
        return f"{q.verb} {np} {'be ' + q.participle if q.participle else q.obj}".strip()
    if q.participle:
        return f"{q.p.is_} {np} {q.participle}"
    if q.verb in ("is", "are"):
        return f"{q.p.is_} {np}"
    return f"{q.p.does} {np} {f'{base_form(q.verb)} {q.obj}'.strip()}"


def _points(q: Predicate) -> list[str]:
    if not (
        re.search(r"\b(?:per|a|each)\s+(?:point|pound|euro|dollar)", q.rest) or re.search(r"\d+ points?\b", q.rest)
    ):
        return []
    return [
        "How many points do I get per pound{at}?",
        "How do I earn points{at}?",
        "What do points give me{at}?",
        "How many points do I need for a voucher{at}?",
        "What is a voucher worth{at}?",
    ]


def _includes(q: Predicate) -> list[str]:
    if not (q.verb in ("includes", "include") or (q.verb in ("comes", "come") and q.rest.startswith("with"))):
        return []
    first = re.split(r",|\band\b|\bor\b", re.sub(r"^with\s+", "", q.rest))[0].strip()
    np, one, does, at = q.p.np, q.p.one, q.p.does, q.at
    return [
        f"What {does} {np} include{at}?",
        f"What comes with {one}{at}?",
        f"What do I get with {one}?",
        f"{does.capitalize()} {np} include {first}?",
    ]


def _durations(q: Predicate) -> list[str]:
    np, does, at = q.p.np, q.p.does, q.at
    out: list[str] = []
    if q.verb in ("takes", "take", "lasts", "last") and DURATION.match(q.rest):
        out += [
            f"How long {does} {np} take{at}?",
            f"How much time {does} {np} take?",
            f"When will my {singular(q.p.head)} be ready{at}?",
        ]
    if "while you wait" in q.rest:
        out += [
            f"How long {does} {np} take{at}?",
            f"Can I wait while {np} {q.p.is_} done?",
            f"{q.p.Is} {np} done while I wait{at}?",
        ]
    if re.search(r"\b(?:warranty|guarantee)\b", q.rest):
        word = "guarantee" if "guarantee" in q.rest else "warranty"
        out += [
            f"How long is the {word} on {np}{at}?",
            f"What {word} {does} {np} come with{at}?",
            f"{does.capitalize()} {np} have a {word}?",
            f"How many years of {word} {does} {np} get?",
        ]
    if within := WITHIN.search(q.rest):
        act, np = q.action or base_form(q.verb), q.p.np
        policy = act in ("return", "refund", "exchange", "cancel")
        out += [
            f"How long do I have to {act} {np}{at}?",
            f"How many {within.group(2).rstrip('s')}s do I have to {act} {np}?",
            f"Can I {act} {np}{at}?",
            f"What is the {act} policy{at}?" if policy else f"When can I {act} {np}?",
        ]
        if "receipt" in q.rest:
            out += [f"Do I need a receipt to {act} {np}{at}?"]
    return out


def _deposits(q: Predicate) -> list[str]:
    if not (q.p.head.lower().startswith("deposit") or "deposit" in q.rest):
        return []
    out = [
        "How much is the deposit{at}?",
        "Is there a deposit{at}?",
        "How big is the deposit{at}?",
        "What deposit do I pay{at}?",
    ]
    if m := re.search(r"\bfor (each|every|a|an|the) (\w+)", q.rest):
        out += [f"How much is the deposit for {article(m.group(2))}{q.at}?"]
    return out


def _payments(q: Predicate) -> list[str]:
    if q.verb not in ("accept", "accepts", "take", "takes") or not re.search(
        r"\b(?:cash|cards?|cheques?|checks?|voucher|paypal)\b", q.rest, re.I
    ):
        return []
    items = [
        re.sub(r"^(?:but\s+)?(?:not\s+)?(?:the\s+)?", "", i.strip()) for i in re.split(r",|\band\b|\bor\b", q.rest)
    ]
    out = ["How can I pay{at}?", "Which payment methods does {biz} accept?", "What forms of payment are accepted{at}?"]
    out += [f"Can I pay by {singular(item)}{{at}}?" for item in items if item and item[0].islower()][:4]
    return out + [f"Do you take {item}?" for item in items if item and item[0].isupper()][:2]


def _weekdays(q: Predicate) -> list[str]:
    if not day_names(q.rest) or re.match(r"^(?:open|closed)\b", q.rest):
        return []
    at, part = q.at, _asked(q)
    out = [f"When {part}{at}?", f"On which day {part}?", f"What day {part}{at}?"]
    out += [f"Which {when} {part}{at}?" for when in ("evening", "morning", "afternoon") if when in q.rest]
    return out


def _passives(q: Predicate) -> list[str]:
    if not q.participle or not q.action or q.participle in ("called", "named", "located", "based", "closed", "opened"):
        return []
    np, head, at, part = q.p.np, q.p.head, q.at, q.participle
    mine = CUSTOMER_ACTIONS.get(q.action)  # what a customer does: the shop sells, I buy
    if q.verb in ("is", "are"):
        out = [f"{q.p.Is} {np} {part}{at}?", f"Does {{biz}} {q.action} {head}?"]
    else:  # a modal: "can be hired", "must be ordered"
        out = [f"Can {np} be {part}{at}?"]
        if q.verb in ("must", "should"):
            out += [f"When {q.verb} {np} be {part}?", f"Do I need to {q.action} {np} in advance?"]
    if mine:
        out += [f"Can I {mine} {head}{at}?", f"How do I {mine} {q.p.one}{at}?"]
    if "advance" in q.rest:
        out += [
            f"How far in advance {q.verb if q.verb in ('must', 'should') else 'should'} {np} be {part}{at}?",
            f"How many days ahead do I need to {q.action} {q.p.one}?",
        ]
    if re.search(r"\bfree\b", q.rest):
        out += [f"{q.p.Is} {np} {part} for free{at}?", f"Do I pay for {q.action.removesuffix('e')}ing {np}?"]
    return out


def _availability(q: Predicate) -> list[str]:
    np, one, at, Is = q.p.np, q.p.one, q.at, q.p.Is
    if re.match(r"^(?:welcome|allowed|permitted)\b", q.rest):
        return [f"{Is} {np} allowed{at}?", f"Can I bring {one}{at}?", f"{Is} {np} welcome{at}?"]
    if re.match(r"^(?:available|offered|on offer|in stock)\b", q.rest):
        return [
            f"{Is} {np} available{at}?",
            f"Can I get {q.p.head}{at}?",
            f"Do you have {q.p.head}?",
            f"Do you offer {q.p.head}?",
        ]
    return []


def _objects(q: Predicate) -> list[str]:
    """What a subject has, gives or gets: "What do the breads contain?", "What do members get?"."""
    base = base_form(q.verb)
    if base not in TRANSITIVE or not (q.obj or base in ("get", "receive", "earn")):
        return []
    out = [f"What {q.p.does} {q.p.np} {base}{q.at}?"]
    if base in ("get", "receive", "earn"):
        out += [f"What do {q.p.np} receive{q.at}?"]
    return out


def _parking(q: Predicate) -> list[str]:
    if q.verb in ("park", "parks") or re.search(r"\bpark(?:ing)?\b", q.rest):
        return [
            "Where can I park{at}?",
            "Is there parking{at}?",
            "Is parking free{at}?",
            "Where do customers park{at}?",
        ]
    return []


RULES: tuple[Callable[[Predicate], list[str]], ...] = (
    _prices,
    _names,
    _places,
    _hours,
    _times,
    _points,
    _includes,
    _durations,
    _deposits,
    _payments,
    _weekdays,
    _availability,
    _parking,
)
FALLBACK_RULES: tuple[Callable[[Predicate], list[str]], ...] = (_passives, _objects)
_ENOUGH = 4


def predicate_templates(clause: Clause, verb: str, rest: str, p: Phrases) -> list[str]:
    """Questions whose answer is ``clause.sentence``, from its predicate ``verb rest``; the
    fallback rules (passives, objects) only where the specific rules found fewer than four."""
    q = _predicate(clause, verb, rest, p)
    out = [template for rule in RULES for template in rule(q)]
    if len(out) < _ENOUGH:
        out += [template for rule in FALLBACK_RULES for template in rule(q)]
    return out
