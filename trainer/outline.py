"""A document's outline (headings and paragraphs, in order) -> records, with FAQ detection.

Every prose reader (text, Markdown, HTML, PDF, DOCX) reduces its format to a list of
:class:`Block`: a heading (``level`` 1-6) or a paragraph (``level`` 0, possibly several lines).
:func:`outline_records` then applies one set of rules to all formats:

- the document title is the first level-1 heading, else the ``title`` the format gives (HTML
  ``<title>``, PDF or DOCX metadata), else ``""``; headings below it form each section's path;
- ``Q:``/``A:`` pairs (also ``Question:``/``Answer:``), in one paragraph or across paragraphs,
  become :class:`QARecord`; a question's answer ends at the next question, the next heading or
  the end of the paragraph holding the ``A:`` line;
- a heading that ends in ``?`` with text under it becomes a :class:`QARecord` whose answer is that
  text (up to the next heading);
- under a heading that names an FAQ (``FAQ``, ``Frequently asked ...``, ``Questions``, ``Q&A``), a
  paragraph that is one question (ending in ``?``) pairs with the paragraphs after it, up to the
  next question or heading (the common bold-question layout of web pages and Word files);
- the remaining paragraphs under one heading path become one :class:`Section`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainer.records import QARecord, Record, Section

_QUESTION = re.compile(r"^\s*(?:Q|Question)\s*[:.)]\s*(.*)$", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(?:A|Answer)\s*[:.)]\s*(.*)$", re.IGNORECASE)
_FAQ_HEADING = re.compile(r"\b(?:faqs?|frequently asked|questions|q\s*&\s*a)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_ITEM = re.compile(r"^(?:[-*+\u2022]|\d+[.)])\s+")


@dataclass(frozen=True)
class Block:
    """A heading (``level`` 1-6) or a paragraph (``level`` 0; lines separated by newlines)."""

    level: int
    text: str


def squash(text: str) -> str:
    """``text`` on one line with single spaces."""
    return _SPACES.sub(" ", text).strip()


@dataclass
class _Pending:
    question: list[str]
    answer: list[str] | None = None
    bare: bool = False  # a question paragraph in an FAQ section; its answer is the next paragraphs


def _bare_question(text: str) -> bool:
    text = squash(text)
    return text.endswith("?") and len(text) <= 300 and text.count("?") == 1 and not _QUESTION.match(text)


def outline_records(blocks: list[Block], source: str, title: str = "") -> list[Record]:
    """Sections and FAQ pairs of the document whose outline is ``blocks`` (see the module doc)."""
    blocks = [Block(b.level, b.text.strip()) for b in blocks if b.text.strip()]
    h1 = next((i for i, b in enumerate(blocks) if b.level == 1), None)
    if h1 is not None:
        title = squash(blocks[h1].text)
    records: list[Record] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    pending: _Pending | None = None

    def flush_pair() -> None:
        nonlocal pending
        if pending is not None and pending.answer and squash(" ".join(pending.answer)):
            records.append(QARecord(squash(" ".join(pending.question)), squash(" ".join(pending.answer)), source))
        elif pending is not None:  # a question without an answer is just prose
            paragraphs.append(squash(" ".join(pending.question)))
        pending = None

    def flush_section() -> None:
        flush_pair()
        if not paragraphs:
            return
        path = tuple(text for _, text in stack)
        if path and path[-1].endswith("?"):
            records.append(QARecord(path[-1], squash(" ".join(paragraphs)), source))
        else:
            records.append(Section(title, path, "\n".join(paragraphs), source))
        paragraphs.clear()

    for index, block in enumerate(blocks):
        if block.level:
            flush_section()
            if index == h1:
                stack = []
                continue
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, squash(block.text)))
            continue
        lines = block.text.splitlines()
        in_faq = any(_FAQ_HEADING.search(text) for _, text in stack)
        if in_faq and _bare_question(block.text):
            flush_pair()
            pending = _Pending([block.text], bare=True)
            continue
        if pending is not None and pending.bare and not _QUESTION.match(lines[0]):
            pending.answer = [*(pending.answer or []), block.text]
            continue
        if pending is not None and (pending.bare or pending.answer is None and not _ANSWER.match(lines[0])):
            flush_pair()
        prose: list[str] = []
        for line in lines:
            if match := _QUESTION.match(line):
                paragraphs.extend(_unwrap(prose))
                prose = []
                flush_pair()
                pending = _Pending([match.group(1)])
            elif pending is not None and (match := _ANSWER.match(line)):
                pending.answer = [*(pending.answer or []), match.group(1)]
            elif pending is not None:
                (pending.question if pending.answer is None else pending.answer).append(line)
            else:
                prose.append(line)
        paragraphs.extend(_unwrap(prose))
        if pending is not None and pending.answer is not None:
            flush_pair()
    flush_section()
    return records


def _unwrap(lines: list[str]) -> list[str]:
    """Soft-wrapped lines joined again; list items (``-``, ``*``, bullets, ``1.``) stay apart."""
    paragraphs: list[str] = []
    for line in (squash(line) for line in lines):
        if not line:
            continue
        item = _ITEM.match(line)
        if paragraphs and not item:
            paragraphs[-1] = f"{paragraphs[-1]} {line}"
        else:
            paragraphs.append(line[item.end() :] if item else line)
    return paragraphs
