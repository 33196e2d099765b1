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
    outline = _Outline(title, source)
    for index, block in enumerate(blocks):
        if index == h1:
            outline.title_heading()
        elif block.level:
            outline.heading(block.level, squash(block.text))
        else:
            outline.paragraph(block.text)
    return outline.finish()


class _Outline:
    """The records of one document, built block by block.

    State: the heading path (``stack``), the prose under it not yet made into a section
    (``paragraphs``) and the question still collecting its answer (``pending``). A heading closes
    the section under the previous path; :meth:`finish` closes the last one.
    """

    def __init__(self, title: str, source: str) -> None:
        self.title = title
        self.source = source
        self.records: list[Record] = []
        self.stack: list[tuple[int, str]] = []
        self.paragraphs: list[str] = []
        self.pending: _Pending | None = None

    def title_heading(self) -> None:
        """The document's title heading: the section path starts again from nothing."""
        self._flush_section()
        self.stack = []

    def heading(self, level: int, text: str) -> None:
        """A heading at ``level`` (1-6) replaces the path from that level down."""
        self._flush_section()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))

    def paragraph(self, text: str) -> None:
        """A paragraph: a bare FAQ question, the answer to one, or lines of prose and ``Q:``/``A:``."""
        lines = text.splitlines()
        pending = self.pending
        if self._in_faq() and _bare_question(text):
            self._flush_pair()
            self.pending = _Pending([text], bare=True)
            return
        if pending is not None and pending.bare and not _QUESTION.match(lines[0]):
            pending.answer = [*(pending.answer or []), text]
            return
        if pending is not None and (pending.bare or pending.answer is None and not _ANSWER.match(lines[0])):
            self._flush_pair()
        self._lines(lines)
        if self.pending is not None and self.pending.answer is not None:
            self._flush_pair()

    def finish(self) -> list[Record]:
        """All records, once the last section is closed."""
        self._flush_section()
        return self.records

    def _in_faq(self) -> bool:
        return any(_FAQ_HEADING.search(text) for _, text in self.stack)

    def _lines(self, lines: list[str]) -> None:
        """One paragraph's lines: ``Q:`` opens a pair, ``A:`` starts its answer, the rest continues
        the open question or answer, or is prose."""
        prose: list[str] = []
        for line in lines:
            if match := _QUESTION.match(line):
                self.paragraphs.extend(_unwrap(prose))
                prose = []
                self._flush_pair()
                self.pending = _Pending([match.group(1)])
            elif self.pending is not None and (match := _ANSWER.match(line)):
                self.pending.answer = [*(self.pending.answer or []), match.group(1)]
            elif self.pending is not None:
                (self.pending.question if self.pending.answer is None else self.pending.answer).append(line)
            else:
                prose.append(line)
        self.paragraphs.extend(_unwrap(prose))

    def _flush_pair(self) -> None:
        """The pending question becomes a pair if it has an answer, else prose."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        question = squash(" ".join(pending.question))
        answer = squash(" ".join(pending.answer or []))
        if answer:
            self.records.append(QARecord(question, answer, self.source))
        else:  # a question without an answer is just prose
            self.paragraphs.append(question)

    def _flush_section(self) -> None:
        """The prose under the current path becomes a section (a pair under a question heading)."""
        self._flush_pair()
        if not self.paragraphs:
            return
        path = tuple(text for _, text in self.stack)
        if path and path[-1].endswith("?"):
            self.records.append(QARecord(path[-1], squash(" ".join(self.paragraphs)), self.source))
        else:
            self.records.append(Section(self.title, path, "\n".join(self.paragraphs), self.source))
        self.paragraphs = []


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
