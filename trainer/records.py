"""What a document yields: the three kinds of record the sample builder turns into chat turns.

- :class:`ChatRecord`: a ready conversation (chat JSONL ``{"messages": [...]}`` or a
  prompt/completion line); the last message is the assistant's.
- :class:`QARecord`: one question with its answer (a CSV row, or an FAQ pair found in a document:
  ``Q:``/``A:`` lines, or a heading ending in ``?`` followed by its answer).
- :class:`Section`: prose under one heading path. ``title`` is the document's title (its first H1,
  else its metadata title, else ``""``); ``headings`` is the path of headings below the title
  (``()`` for text before the first heading); ``text`` has one paragraph or list item per line.

``source`` names where the record came from (file name, plus a line or row where it helps), for
error messages and statistics. Records are immutable values; nothing here parses anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatRecord:
    """A conversation to train on as is: ``{"role", "content"}`` dicts, ending with the assistant."""

    messages: tuple[dict[str, str], ...]
    source: str


@dataclass(frozen=True)
class QARecord:
    """A question and its reference answer."""

    question: str
    answer: str
    source: str


@dataclass(frozen=True)
class Section:
    """Prose under a heading path, one paragraph (or list item) per line of ``text``."""

    title: str
    headings: tuple[str, ...]
    text: str
    source: str


Record = ChatRecord | QARecord | Section


class DocumentError(ValueError):
    """A document that cannot be used; ``message`` is fit to show the user.

    ``code`` is the protocol's error code: ``invalid_file`` or ``file_too_large``.
    """

    def __init__(self, message: str, code: str = "invalid_file") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
