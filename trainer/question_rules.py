"""Sentence patterns -> question templates: the rules that turn one fact into many questions.

Each rule looks at one predicate of a parsed sentence (:class:`~trainer.sentences.Clause`) and
returns question templates for it, most natural first. Templates may hold three placeholders,
filled by :mod:`trainer.questions`: ``{at}`` (``""`` or `` at <business>``), ``{biz}`` (the
business's name) and ``{biz_s}`` (its possessive). The answer to every question a rule makes is
the sentence itself, so a rule only has to ask something the sentence answers.

Rules: prices (``costs``, ``for 25 pounds per day``), names (``is called``), places (``is at``,
``in the town of``), opening hours and closing days, times of day, phone and email, parking,
what something includes or comes with, durations, warranties, deadlines (``within 30 days``),
founding year and founder, deposits, what is accepted (``Can I pay by ...?``), when something
happens (weekdays), what someone gets or gives, and yes/no questions for ``can be``/``welcome``.
:func:`generic_templates` adds catch-all questions so that every sentence is asked about.
"""

from __future__ import annotations

import re

from trainer.sentences import Clause, article, base_form, singular

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
BUSINESS_WORDS = {"shop", "store", "business", "company", "we", "us", "you", "office", "restaurant", "cafe",
                  "salon", "studio", "clinic", "hotel", "bakery", "workshop", "practice", "firm", "team"}  # fmt: skip
_PERSON_WORDS = ("mechanic", "manager", "owner", "founder", "chef", "director", "head", "boss", "staff",
                 "doctor", "teacher", "coach", "instructor", "assistant", "receptionist", "ceo")  # fmt: skip
_MONEY = re.compile(r"(?:[£$€]\s?\d[\d,.]*|\b\d[\d,.]*\s?(?:pounds?|euros?|dollars?|gbp|eur|usd|pence|cents?)\b)", re.I)
_TIME = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\.?)|\b\d{1,2}:\d{2}\b", re.I)
_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PER = re.compile(r"\b(?:per|a|an|each)\s+(day|hour|week|month|night|year|person|session|lesson)\b", re.I)
_WITHIN = re.compile(r"\bwithin\s+(\S+)\s+(days?|weeks?|months?|hours?|years?)\b", re.I)
_DURATION = re.compile(r"^(\S+(?:\s+working)?\s+(?:minutes?|hours?|days?|weeks?|months?))\b", re.I)
_STREET = re.compile(r"\b\d+\s+[A-Z]\w+\s+(?:Street|St|Road|Rd|Lane|Avenue|Ave|Way|Square|Place|Drive)\b")
_TOWN = re.compile(r"\b(?:in the (?:town|city|village) of|in)\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)?)")
_FOUNDED = re.compile(r"\b(?:founded|established|opened|started|set up)\b(?:\s+in\s+(\d{4}))?(?:.*?\bby\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)*))?")


def day_names(text: str) -> list[str]:
    """Weekdays named in ``text``; ``Tuesday to Saturday`` names the days between too."""
    found = [d for d in DAYS if re.search(rf"\b{d}s?\b", text)]
    for first, last in re.findall(rf"\b({'|'.join(DAYS)})s? (?:to|until|till|-|through) ({'|'.join(DAYS)})", text):
        i, j = DAYS.index(first), DAYS.index(last)
        found += [DAYS[k % 7] for k in range(i, j + 1 if j >= i else j + 8)]
    return list(dict.fromkeys(found))


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


def predicate_templates(clause: Clause, verb: str, rest: str, p: Phrases) -> list[str]:
    """Questions whose answer is ``clause.sentence``, from its predicate ``verb rest``."""
    np, the, one, does, is_ = p.np, p.the, p.one, p.does, p.is_
    at = "" if p.is_business else "{at}"
    out: list[str] = []
    passive = re.match(r"^be\s+(\w+ed|sold|done|taken|given|made|held|kept|paid|run|seen)\b", rest)
    participle = re.match(r"^(\w+ed|sold|done|taken|given|made|held|kept|paid|run|seen)\b", rest) if verb in ("is", "are") else None
    action = base_form(passive.group(1)) if passive else base_form(participle.group(1)) if participle else None
    money = _MONEY.search(rest)
    if money and (verb in ("cost", "costs", "charge", "charges") or action or " for " in f" {rest}"):
        out += [f"How much {does} {np} cost{at}?", f"What is the price of {the}{at}?", f"How much {is_} {np}{at}?",
                f"What {does} {np} cost{at}?", f"How much do I pay for {one}{at}?", f"How much do you charge for {one}?",
                f"How expensive {is_} {np}{at}?"]  # fmt: skip
        if action and not p.is_business:
            out += [f"How much does it cost to {action} {one}{at}?", f"What does it cost to {action} {one}{at}?"]
        if per := _PER.search(rest):
            unit = per.group(1).lower()
            out += [f"How much {is_} {np} per {unit}{at}?", f"What does one {unit} of {singular(p.head)} cost{at}?"]
    if verb in ("is", "are") and re.match(r"^(?:called|named|known as)\b", rest):
        out += [f"What is {the} called{at}?", f"What is the name of {the}{at}?", f"What's {the} called?"]
        if any(word in p.head.lower() for word in _PERSON_WORDS):
            out += [f"Who is {the}{at}?", f"Who is {{biz_s}} {singular(p.head)}?", f"Who works as {the}{at}?"]
        else:
            out += [f"What is {{biz_s}} {p.head} called?", f"What name does {the} have?"]
    if verb in ("is", "are") and re.match(r"^(?:located\s+)?(?:at|on|near|next to|opposite|behind|beside|in)\b", rest):
        out += [f"Where {is_} {np}{at}?", f"Where {is_} {np} located?", f"Where can I find {the}{at}?"]
        if p.is_business or _STREET.search(rest):
            out += ["What is the address of {biz}?", "What is {biz_s} street address?", "Where are you located?",
                    "Which street is {biz} on?", "How do I find {biz}?"]  # fmt: skip
    if re.match(r"^open\b", rest) or verb in ("opens", "open"):
        out += [f"When {is_} {np} open?", "What are {biz_s} opening hours?", f"What time does {np} open?",
                f"What time does {np} close?", f"Which days {is_} {np} open?", "What are the opening hours{at}?",
                "When can I visit {biz}?"]  # fmt: skip
        out += [f"Is {np} open on {day}s?" for day in day_names(rest)]
    if re.match(r"^closed\b", rest):
        out += [f"When {is_} {np} closed?", f"Which days {is_} {np} closed?", f"{'Are' if p.plural else 'Is'} {np} open every day?"]
        out += [f"Is {np} open on {day}{s}?" for day in day_names(clause.sentence) for s in ("", "s")]
    if (time := _TIME.search(rest)) and not re.match(r"^(?:open|closed)\b", rest):
        obj = re.split(r"\s+(?:only|just|also|from|until|till|before|after|at|between|by)\b", rest)[0]
        verb_phrase = f"{base_form(verb)} {obj}".strip()
        out += [f"When {does} {np} {verb_phrase}{at}?", f"What time {does} {np} {verb_phrase}?"]
        if re.search(r"\b(?:before|until|till|by)\s+" + re.escape(time.group()), rest):
            out += [f"Until what time {does} {np} {verb_phrase}{at}?", f"What is the latest time {np} {verb}{' ' + obj if obj else ''}?"]
    if re.search(r"\b(?:per|a|each)\s+(?:point|pound|euro|dollar)", rest) or re.search(r"\d+ points?\b", rest):
        out += ["How many points do I get per pound{at}?", "How do I earn points{at}?", "What do points give me{at}?",
                "How many points do I need for a voucher{at}?", "What is a voucher worth{at}?"]  # fmt: skip
    if verb in ("includes", "include") or (verb in ("comes", "come") and rest.startswith("with")):
        obj = re.sub(r"^with\s+", "", rest)
        first = re.split(r",|\band\b|\bor\b", obj)[0].strip()
        out += [f"What {does} {np} include{at}?", f"What comes with {one}{at}?", f"What do I get with {one}?",
                f"{does.capitalize()} {np} include {first}?"]  # fmt: skip
    if verb in ("takes", "take", "lasts", "last") and _DURATION.match(rest):
        out += [f"How long {does} {np} take{at}?", f"How much time {does} {np} take?", f"When will my {singular(p.head)} be ready{at}?"]
    if "while you wait" in rest or "while-you-wait" in rest:
        out += [f"How long {does} {np} take{at}?", f"Can I wait while {np} {'are' if p.plural else 'is'} done?",
                f"{'Are' if p.plural else 'Is'} {np} done while I wait{at}?"]  # fmt: skip
    if re.search(r"\b(?:warranty|guarantee)\b", rest):
        word = "guarantee" if "guarantee" in rest else "warranty"
        out += [f"How long is the {word} on {np}{at}?", f"What {word} {does} {np} come with{at}?",
                f"{does.capitalize()} {np} have a {word}?", f"How many years of {word} {does} {np} get?"]  # fmt: skip
    if within := _WITHIN.search(rest):
        act = action or base_form(verb)
        out += [f"How long do I have to {act} {np}{at}?", f"How many {within.group(2).rstrip('s')}s do I have to {act} {np}?",
                f"Can I {act} {np}{at}?", f"What is the {act} policy{at}?" if act in ("return", "refund", "exchange", "cancel") else f"When can I {act} {np}?"]  # fmt: skip
        if "receipt" in rest:
            out += [f"Do I need a receipt to {act} {np}{at}?"]
    if p.head.lower().startswith("deposit") or "deposit" in rest:
        out += ["How much is the deposit{at}?", "Is there a deposit{at}?", "How big is the deposit{at}?", "What deposit do I pay{at}?"]
        if m := re.search(r"\bfor (each|every|a|an|the) (\w+)", rest):
            out += [f"How much is the deposit for {article(m.group(2))}{at}?"]
    if verb in ("accept", "accepts", "take", "takes") and re.search(r"\b(?:cash|cards?|cheques?|checks?|voucher|paypal)\b", rest, re.I):
        items = [re.sub(r"^(?:but\s+)?(?:not\s+)?(?:the\s+)?", "", i.strip()) for i in re.split(r",|\band\b|\bor\b", rest)]
        out += ["How can I pay{at}?", "Which payment methods does {biz} accept?", "What forms of payment are accepted{at}?"]
        out += [f"Can I pay by {singular(item)}{at}?" for item in items if item and item[0].islower()][:4]
        out += [f"Do you take {item}?" for item in items if item and item[0].isupper()][:2]
    days = day_names(rest)
    if days and not re.match(r"^(?:open|closed)\b", rest):
        v = action or base_form(verb)
        part = f"{is_} {np} {participle.group(1)}" if participle else f"{does} {np} {v}"
        out += [f"When {part}{at}?", f"On which day {part}?", f"What day {part}{at}?"]
        if "evening" in rest:
            out += [f"Which evening {part}{at}?"]
        if "morning" in rest:
            out += [f"Which morning {part}?"]
        if participle and action:
            out += [f"Does {{biz}} {action} {p.head}?", f"Can I {'buy' if action == 'sell' else action} {p.head}{at}?"]
    if re.match(r"^(?:welcome|allowed|permitted)\b", rest):
        out += [f"{'Are' if p.plural else 'Is'} {np} allowed{at}?", f"Can I bring {one}{at}?", f"{'Are' if p.plural else 'Is'} {np} welcome{at}?"]
    if verb in ("get", "gets", "receive", "receives", "earn", "earns"):
        out += [f"What {does} {np} get{at}?", f"What do {np} receive{at}?"]
    if verb in ("park", "parks") or re.search(r"\bpark(?:ing)?\b", rest):
        out += ["Where can I park{at}?", "Is there parking{at}?", "Is parking free{at}?", "Where do customers park{at}?"]
    return out


def sentence_templates(sentence: str) -> list[str]:
    """Questions triggered by the sentence as a whole: contact details and founding facts."""
    out: list[str] = []
    if _PHONE.search(sentence):
        out += ["What is {biz_s} phone number?", "What number do I call to reach {biz}?", "How can I call {biz}?",
                "What is the telephone number{at}?", "How do I phone {biz}?"]  # fmt: skip
    if _EMAIL.search(sentence):
        out += ["What is {biz_s} email address?", "How can I email {biz}?", "What email address does {biz} use?",
                "Where do I write to {biz}?"]  # fmt: skip
    if _PHONE.search(sentence) or _EMAIL.search(sentence):
        out += ["How can I contact {biz}?", "How do I get in touch with {biz}?"]
    if founded := _FOUNDED.search(sentence):
        if founded.group(1):
            out += ["When was {biz} founded?", "What year was {biz} founded?", "How long has {biz} existed?",
                    "When did {biz} start?", "In which year did {biz} open?"]  # fmt: skip
        if founded.group(2):
            out += ["Who founded {biz}?", "Who started {biz}?", "Who is the founder of {biz}?", "Who set up {biz}?"]
    if _TOWN.search(sentence) and not _STREET.search(sentence):
        out += ["Where is {biz}?", "In which town is {biz}?", "What town is {biz} in?", "Where is {biz} based?"]
    return out


def generic_templates(clause: Clause, p: Phrases) -> list[str]:
    """Catch-all questions about the subject: every sentence gets at least these."""
    if p.is_business:
        return ["What is {biz}?", "Tell me about {biz}.", "What kind of business is {biz}?", "What does {biz} do?"]
    return [f"What about {p.the}{{at}}?", f"Tell me about {p.the}{{at}}.", f"What should I know about {p.the}{{at}}?",
            f"What can you tell me about {p.the}?"]  # fmt: skip
