"""A document's passages for retrieval: what a tenant's knowledge index holds of one file.

Contract: :func:`document_passages` turns the records :func:`trainer.documents.read_document`
found into passages of at most :data:`MAX_PASSAGE_CHARS` characters, each with its heading path
(``"Title > Section > Subsection"``; a question for an FAQ pair) and its text, in document order;
prose is cut at line (paragraph) boundaries, a single longer line at word boundaries. ``start`` and
``end`` are each passage's character span in the file's *passage text*: every passage's text,
in order, joined by a blank line (what citations point into). Conversations (chat JSONL) and
preference pairs are training data, not knowledge: they yield no passages. At most
:data:`MAX_PASSAGES` passages per file.
"""

from __future__ import annotations

from typing import Any

from trainer.documents import Document
from trainer.records import QARecord, Section

MAX_PASSAGE_CHARS = 800
MAX_PASSAGES = 20_000
_JOIN = "\n\n"


def _pieces(text: str) -> list[str]:
    """``text`` cut into pieces of at most MAX_PASSAGE_CHARS, at line then word boundaries."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > MAX_PASSAGE_CHARS:  # one very long paragraph: cut at the last space
            cut = line.rfind(" ", 0, MAX_PASSAGE_CHARS)
            cut = cut if cut > 0 else MAX_PASSAGE_CHARS
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut].strip())
            line = line[cut:].strip()
        if current and len(current) + 1 + len(line) > MAX_PASSAGE_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current.strip():
        pieces.append(current)
    return [p for p in pieces if p.strip()]


def document_passages(document: Document) -> list[dict[str, Any]]:
    """``[{"heading", "text", "start", "end"}, ...]`` (see the module docstring)."""
    passages: list[dict[str, Any]] = []
    offset = 0
    for record in document.records:
        if isinstance(record, Section):
            heading = " > ".join(h for h in (record.title, *record.headings) if h)
            texts = _pieces(record.text)
        elif isinstance(record, QARecord):
            heading = record.question
            texts = _pieces(f"{record.question}\n{record.answer}")
        else:
            continue
        for text in texts:
            if len(passages) >= MAX_PASSAGES:
                return passages
            passages.append({"heading": heading[:300], "text": text, "start": offset, "end": offset + len(text)})
            offset += len(text) + len(_JOIN)
    return passages
