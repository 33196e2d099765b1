"""The grounding evaluation set: handbooks and hand-written questions, and how a reply is scored.

Contract: :func:`handbooks` lists every :class:`Handbook` of bench/grounding_eval/ (see its
README: questions written apart from the trainer's question generator, never fed to it) and
the bicycle shop of examples/handbook.md with tests/trainer/handbook_probes.json, the handbook
the generator was developed on (``seen_by_generator``). :func:`correct` is the rule: a reply is
correct when it matches every group of ``expect``, a group when it contains any of its strings
as whole words (:func:`trainer.recall.answer_matches`). ``unanswerable`` questions are scored
apart (the reply should say it does not know); recall counts the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.recall import answer_matches

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT / "bench" / "grounding_eval"
UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class Question:
    text: str
    style: str
    expect: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Handbook:
    slug: str
    path: Path
    questions: tuple[Question, ...]
    seen_by_generator: bool = False


def _question(raw: dict) -> Question:
    expect = raw["expect"]
    groups = [expect] if expect and isinstance(expect[0], str) else expect  # a flat list is one group
    return Question(raw["question"], raw.get("style", "direct"), tuple(tuple(g) for g in groups))


def _load(slug: str, path: Path, questions: Path, seen: bool = False) -> Handbook:
    return Handbook(slug, path, tuple(_question(q) for q in json.loads(questions.read_text())), seen)


def handbooks() -> list[Handbook]:
    found = [
        _load(md.stem, md, md.with_name(f"{md.stem}.questions.json"))
        for md in sorted(EVAL_DIR.glob("*.md"))
        if md.name != "README.md"
    ]
    lumen = _load("bicycle_shop", ROOT / "examples" / "handbook.md", ROOT / "tests/trainer/handbook_probes.json", True)
    return [*found, lumen]


def correct(reply: str, question: Question) -> bool:
    return all(answer_matches(reply, group) for group in question.expect)
