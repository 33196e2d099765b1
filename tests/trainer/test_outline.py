"""outline_records on hand-made outlines: the heading path, unanswered questions, FAQ answers."""

from __future__ import annotations

from trainer.outline import Block, outline_records
from trainer.records import QARecord, Section


def test_the_title_heading_restarts_the_path_and_later_headings_replace_their_level() -> None:
    blocks = [
        Block(2, "Preface"),
        Block(0, "before the title"),
        Block(1, "Acme  Bakery"),
        Block(0, "under the title"),
        Block(2, "Bread"),
        Block(3, "Rye"),
        Block(0, "dark and sour"),
        Block(2, "Cakes"),
        Block(0, "sweet"),
        Block(1, "A second H1"),
        Block(0, "is an ordinary heading"),
    ]
    assert outline_records(blocks, "doc.md", title="metadata title") == [
        Section("Acme Bakery", ("Preface",), "before the title", "doc.md"),
        Section("Acme Bakery", (), "under the title", "doc.md"),
        Section("Acme Bakery", ("Bread", "Rye"), "dark and sour", "doc.md"),
        Section("Acme Bakery", ("Cakes",), "sweet", "doc.md"),
        Section("Acme Bakery", ("A second H1",), "is an ordinary heading", "doc.md"),
    ]


def test_a_question_without_an_answer_stays_prose_in_its_section() -> None:
    blocks = [
        Block(2, "Notes"),
        Block(0, "first line\nQ: anyone there?\nstill asking"),
        Block(2, "Next"),
        Block(0, "x"),
    ]
    assert outline_records(blocks, "n.txt") == [
        Section("", ("Notes",), "first line\nanyone there? still asking", "n.txt"),
        Section("", ("Next",), "x", "n.txt"),
    ]


def test_a_bare_faq_answer_runs_until_a_q_line_and_a_pair_closes_with_its_paragraph() -> None:
    blocks = [
        Block(2, "FAQ"),
        Block(0, "Do you ship?"),
        Block(0, "Yes."),
        Block(0, "Worldwide."),
        Block(0, "Q: Returns?\nA: Within 30 days."),
        Block(0, "Plain words after the pair."),
    ]
    assert outline_records(blocks, "f.md") == [
        QARecord("Do you ship?", "Yes. Worldwide.", "f.md"),
        QARecord("Returns?", "Within 30 days.", "f.md"),
        Section("", ("FAQ",), "Plain words after the pair.", "f.md"),
    ]
