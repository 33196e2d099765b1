"""Probe recall: key terms of reference answers and the any-term, whole-word match rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.recall import answer_matches, key_terms

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    ("answer", "terms"),
    [
        ("The shop is open Tuesday to Saturday from 9:30 to 18:00.", ("9:30", "18:00", "Tuesday", "Saturday")),
        (
            "You can call us on 0161 555 0142 or write to help@lumenlane.example.",
            ("help@lumenlane.example", "0161 555 0142"),
        ),
        ("Our head mechanic is called Tomasz Wierzbicki.", ("Tomasz Wierzbicki",)),
        ("On Sundays and Mondays the shop is closed.", ("Sundays", "Mondays")),
        ("New bicycles come with a 5-year warranty on the frame.", ("5",)),
        ("Lessons start at 6pm and cost 20 pounds.", ("6pm", "20")),
        ("Yes, well-behaved dogs are welcome in the shop.", ("well-behaved", "welcome", "dogs")),
    ],
)
def test_key_terms(answer: str, terms: tuple[str, ...]) -> None:
    assert key_terms(answer) == terms


def test_yes_and_no_are_never_terms() -> None:
    assert not {"yes", "no"} & {t.lower() for t in key_terms("Yes. No, we do not. Yes!")}


@pytest.mark.parametrize(
    ("reply", "expect", "matches"),
    [
        ("We open at 9:30 sharp.", ["9:30"], True),
        ("Walk-ins until 12:00.", ["12"], True),
        ("It costs 120 pounds.", ["12"], False),
        ("That is not possible.", ["no"], False),
        ("No, sorry.", ["not cheques", "no"], True),
        ("Call   0161\n555 0142 today", ["0161 555 0142"], True),
        ("PEDAL POINTS is our scheme", ["Pedal Points"], True),
        ("Email help@lumenlane.example.", ["help@lumenlane.example"], True),
        ("Pedal is a word", ["Pedal Points"], False),
        ("anything", [], False),
    ],
)
def test_answer_matches_any_whole_word_case_insensitive(reply: str, expect: list[str], matches: bool) -> None:
    assert answer_matches(reply, expect) is matches


def test_handbook_probe_terms_are_in_the_handbook() -> None:
    probes = json.loads((HERE / "handbook_probes.json").read_text())
    handbook = (HERE.parents[1] / "examples" / "handbook.md").read_text()
    assert len(probes) == 22
    for probe in probes:
        assert answer_matches(handbook, probe["expect"]), probe
