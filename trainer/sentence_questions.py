"""Questions a sentence raises as a whole, whatever its predicates: how to contact the business,
when it was founded and by whom, which town it is in; and catch-all questions about its subject.

:func:`sentence_templates` and :func:`generic_templates` return templates with the placeholders of
:mod:`trainer.question_rules` (``{at}``, ``{biz}``, ``{biz_s}``); the answer to each is the sentence itself.
"""

from __future__ import annotations

from trainer.question_rules import Phrases
from trainer.question_words import EMAIL, FOUNDED, PHONE, STREET, TOWN
from trainer.sentences import Clause


def sentence_templates(sentence: str) -> list[str]:
    """Questions triggered by the sentence as a whole: contact details, founding, the town."""
    out: list[str] = []
    if PHONE.search(sentence):
        out += [
            "What is {biz_s} phone number?",
            "What number do I call to reach {biz}?",
            "How can I call {biz}?",
            "What is the telephone number{at}?",
            "How do I phone {biz}?",
        ]
    if EMAIL.search(sentence):
        out += [
            "What is {biz_s} email address?",
            "How can I email {biz}?",
            "What email address does {biz} use?",
            "Where do I write to {biz}?",
        ]
    if PHONE.search(sentence) or EMAIL.search(sentence):
        out += ["How can I contact {biz}?", "How do I get in touch with {biz}?"]
    if founded := FOUNDED.search(sentence):
        if founded.group(1):
            out += [
                "When was {biz} founded?",
                "What year was {biz} founded?",
                "How long has {biz} existed?",
                "When did {biz} start?",
                "In which year did {biz} open?",
            ]
        if founded.group(2):
            out += ["Who founded {biz}?", "Who started {biz}?", "Who is the founder of {biz}?", "Who set up {biz}?"]
    if TOWN.search(sentence) and not STREET.search(sentence):
        out += ["Where is {biz}?", "In which town is {biz}?", "What town is {biz} in?", "Where is {biz} based?"]
    return out


def generic_templates(clause: Clause, p: Phrases) -> list[str]:
    """Catch-all questions about the subject: every sentence gets at least these."""
    if p.is_business:
        return ["What is {biz}?", "Tell me about {biz}.", "What kind of business is {biz}?", "What does {biz} do?"]
    return [
        f"What about {p.the}{{at}}?",
        f"Tell me about {p.the}{{at}}.",
        f"What should I know about {p.the}{{at}}?",
        f"What can you tell me about {p.the}?",
    ]
