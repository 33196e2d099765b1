"""Prose -> questions: sentence patterns, business name, coverage of every sentence, determinism."""

from __future__ import annotations

import random

import pytest

from trainer.condition_questions import condition_templates
from trainer.questions import business_name, pair_fact, section_fact, sentence_facts
from trainer.records import QARecord, Section
from trainer.sentences import base_form, parse, singular, split_sentences
from trainer.typos import misspell

BIZ = "Lumen Lane Bicycles"


def facts_for(text: str, headings: tuple[str, ...] = ("Prices",), seed: int = 0, phrasings: int = 40):
    section = Section(f"{BIZ} \u2014 Customer Handbook", headings, text, "h.md")
    return sentence_facts(section, BIZ, {"Harrowgate", "Lane", "Bicycles", "Pedal", "Points"}, phrasings, seed)


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Lumen Lane Bicycles \u2014 Customer Handbook", "Lumen Lane Bicycles"),
        ("Acme Bakery FAQ", "Acme Bakery"),
        ("Staff handbook: Northwind Traders", "Northwind Traders"),
        ("Welcome to Café Olé", "Café Olé"),
        ("Handbook", ""),
        ("", ""),
    ],
)
def test_business_name(title: str, name: str) -> None:
    assert business_name(title) == name


def test_business_name_from_the_first_sentence_when_the_title_has_none() -> None:
    assert business_name("Customer Handbook", "Harbour View Dental is a family practice.") == "Harbour View Dental"
    assert business_name("Customer Handbook", "We are a family practice.") == ""
    assert business_name("Acme Guide", "Harbour View Dental is a family practice.") == "Acme"


@pytest.mark.parametrize(
    ("sentence", "wanted"),
    [
        ("Check-in is from 15:30 to 20:45.", ["When is check-in?", "What time is check-in?"]),
        ("Plan members receive 10 percent off other treatments.", ["What do plan members receive?"]),
        ("Guided walks leave from the door at 6:50.", ["When do guided walks leave?"]),
        ("Rooms must be vacated by 10:15.", ["When must rooms be vacated?", "Until what time must rooms be vacated?"]),
        (
            "Breakfast is served from 7:45 on Sundays.",
            ["When is breakfast served?", "On which day is breakfast served?"],
        ),
        (
            "A basic tune-up costs 45 pounds and takes one working day.",
            [
                "How much does a basic tune-up cost?",
                "How long does a basic tune-up take?",
                "What is the price of the basic tune-up at Lumen Lane?",
            ],
        ),
        (
            "Hybrid bikes can be hired for 25 pounds per day.",
            ["How much does it cost to hire a hybrid bike?", "How much are hybrid bikes per day?"],
        ),
        (
            "Our head mechanic is called Tomasz Wierzbicki.",
            ["Who is the head mechanic?", "What is the name of the head mechanic at Lumen Lane Bicycles?"],
        ),
        (
            "The shop is at 14 Quarry Street, Harrowgate, next to the old clock tower.",
            ["Where is Lumen Lane Bicycles?", "What is the address of Lumen Lane?"],
        ),
        ("On Sundays and Mondays the shop is closed.", ["Is Lumen Lane Bicycles open on Mondays?"]),
        (
            "The shop is open Tuesday to Saturday from 9:30 to 18:00.",
            ["What time does Lumen Lane Bicycles open?", "Is Lumen Lane Bicycles open on Thursdays?"],
        ),
        (
            "The repair workshop takes walk-in repairs only before 12:00.",
            ["Until what time does the repair workshop take walk-in repairs?"],
        ),
        (
            "You can call us on 0161 555 0142 or write to help@lumenlane.example.",
            ["What is Lumen Lane Bicycles' phone number?", "How can I email Lumen Lane?"],
        ),
        (
            "Unused items can be returned within 30 days with a receipt.",
            ["How many days do I have to return unused items?", "What is the return policy at Lumen Lane Bicycles?"],
        ),
        (
            "The loyalty programme is called Pedal Points.",
            ["What is the loyalty programme called?", "What is the loyalty scheme called?"],
        ),
        (
            "Lumen Lane Bicycles is a family-run bicycle shop in the town of Harrowgate, "
            "founded in 2009 by Petra Okonkwo.",
            [
                "When was Lumen Lane Bicycles founded?",
                "Who founded Lumen Lane?",
                "In which town is Lumen Lane Bicycles?",
            ],
        ),
    ],
)
def test_sentence_patterns_ask_what_the_sentence_answers(sentence: str, wanted: list[str]) -> None:
    (fact,) = facts_for(sentence)
    assert fact.answer == sentence and fact.kind == "sentence"
    assert set(wanted) <= set(fact.questions), sorted(fact.questions)
    assert len(set(q.lower() for q in fact.questions)) == len(fact.questions)


def test_every_sentence_is_asked_several_ways_with_and_without_the_name() -> None:
    text = "Our motto is simple.\nThe kettle is always on. Bring your own mug!"
    facts = facts_for(text, phrasings=6)
    assert [f.answer for f in facts] == ["Our motto is simple.", "The kettle is always on.", "Bring your own mug!"]
    for fact in facts:
        assert len(fact.questions) >= 3
        named = ["lumen lane" in q.lower() for q in fact.questions]  # the typed one is in lower case
        assert any(named) and not all(named)


def test_a_fact_asked_four_ways_or_more_is_asked_once_as_typed_in_a_hurry() -> None:
    (fact,) = facts_for("A routine check-up costs 37 pounds.")
    *asked, typed = fact.questions
    assert len(asked) >= 3 and all(q[0].isupper() for q in asked)
    assert typed == typed.lower() and typed.rstrip("?") not in [q.lower().rstrip("?") for q in asked]
    rng = random.Random(0)
    for _ in range(50):  # one word of five letters or more misspelt, the rest as it was
        question = "How much does a routine check-up cost at Brightwater?"
        words, typed_words = question.lower().rstrip("?").split(), misspell(question, rng).rstrip("?").split()
        assert len(words) == len(typed_words)
        (changed,) = [(a, b) for a, b in zip(words, typed_words, strict=True) if a != b]
        assert len(changed[0]) >= 5 and abs(len(changed[0]) - len(changed[1])) <= 1 and changed[0][0] == changed[1][0]
    assert misspell("Who is Dr McLaren at 10?", rng).rstrip("?") == "who is dr mclaren at 10"  # names left alone


def test_a_sentence_about_a_situation_is_asked_from_the_situation() -> None:
    (fact,) = facts_for("If you are in pain during opening hours, call reception before 9:00 for a same-day slot.")
    wanted = {
        "What should I do if I am in pain during opening hours?",
        "I am in pain during opening hours. What should I do?",
    }
    assert wanted <= set(fact.questions) | {q.lower() for q in fact.questions}, fact.questions
    assert not any("if you" in q.lower() for q in fact.questions)  # never "Where are if you located?"
    assert condition_templates("Please give 36 hours' notice if you need to cancel your visit.")[:2] == [
        "What should I do if I need to cancel my visit{at}?",
        "What happens if I need to cancel my visit?",
    ]
    assert condition_templates("The shop opens at nine.") == []


def test_passage_and_faq_facts() -> None:
    section = Section(
        "Lumen Lane Bicycles \u2014 Handbook", ("Bike hire",), "Hybrid bikes cost 25 pounds.\nHelmets are free.", "h.md"
    )
    passage = section_fact(section, BIZ, 5, seed=0)
    assert passage.kind == "passage" and passage.answer == "Hybrid bikes cost 25 pounds. Helmets are free."
    assert len(passage.questions) == 5 and any("bike hire" in q for q in passage.questions)
    pair = QARecord("Do you sell second-hand bicycles?", "Yes, they are sold every Saturday morning.", "h.md")
    faq = pair_fact(pair, BIZ, set(), 10, seed=0)
    assert faq.questions[0] == pair.question and faq.answer == pair.answer
    assert "Does Lumen Lane Bicycles sell second-hand bicycles?" in faq.questions


def test_same_seed_same_questions_other_seed_other_choice() -> None:
    text = "A full service costs 95 pounds and includes new brake pads and a chain clean."
    assert facts_for(text, seed=3, phrasings=8) == facts_for(text, seed=3, phrasings=8)
    assert facts_for(text, seed=3, phrasings=8) != facts_for(text, seed=4, phrasings=8)


def test_grammar_helpers() -> None:
    assert [
        base_form(v) for v in ("hired", "returned", "sold", "takes", "includes", "opened", "stopped", "called")
    ] == [
        "hire",
        "return",
        "sell",
        "take",
        "include",
        "open",
        "stop",
        "call",
    ]
    assert singular("beginner cycling lessons for adults") == "beginner cycling lesson for adults"
    assert split_sentences("Open at 9:30. Closed e.g. on Mondays. Ask Dr. Smith!\n- a list item") == [
        "Open at 9:30.",
        "Closed e.g. on Mondays.",
        "Ask Dr. Smith!",
        "- a list item",
    ]
    clause = parse("Puncture repairs cost 12 pounds and are done while you wait.", set())
    assert (clause.subject, clause.plural) == ("puncture repairs", True)
    assert clause.predicates == (("cost", "12 pounds"), ("are", "done while you wait"))


def test_a_long_passage_answer_stops_at_a_sentence_end() -> None:
    text = " ".join(f"Rule {n} says that bikes are checked every {n} days." for n in range(1, 200))
    fact = section_fact(Section("", ("House rules",), text, "h.md"), "", 3, seed=0)
    assert 1000 < len(fact.answer) <= 1200 and fact.answer.endswith("days.")
    assert text.startswith(fact.answer)
