"""Prose formats -> an outline of :class:`~trainer.outline.Block` (headings and paragraphs).

One reader per format, each built on a well-kept parser; each returns ``(blocks, title)`` where
``title`` is the format's own metadata title (``""`` when it has none):

- :func:`text_blocks`: plain text (also what PDFs yield). Paragraphs are separated by blank lines;
  ``#`` lines and underlined (``===``/``---``) lines are headings, and so is a short line (at
  most 8 words and 60 characters, no closing ``.,;:!``, starting with a capital or digit, not a
  list item or ``Q:``/``A:`` line, not followed by a line in lower case) that begins a paragraph
  or follows a line ending a sentence (PDF text has no blank lines). A first such line is the
  title (level 1).
- :func:`markdown_blocks`: markdown-it-py tokens (CommonMark plus tables).
- :func:`html_blocks`: BeautifulSoup with lxml; ``script``, ``style``, ``nav``, ``noscript``,
  ``template``, ``svg`` and ``form`` are dropped; ``h1``-``h6`` are headings; block elements end
  paragraphs; table cells are joined with ``"; "``.
- :func:`pdf_text`: pypdf's text of every page (the caller feeds it to :func:`text_blocks`).
- :func:`docx_blocks`: python-docx paragraphs and tables in body order; ``Title`` and
  ``Heading N`` styles are headings.

Readers raise whatever their parser raises on a corrupt file; :mod:`trainer.documents` turns that
into a :class:`~trainer.records.DocumentError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.outline import Block, squash

if TYPE_CHECKING:
    from markdown_it.token import Token

_MAX_HEADING = 300  # longer lines are never headings (and never reach a backtracking pattern)
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^\s*(=+|-+)\s*$")
_LIST_OR_QA = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)]|(?:Q|A|Question|Answer)\s*[:.)])", re.IGNORECASE)
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_DROPPED_TAGS = ["script", "style", "nav", "noscript", "template", "svg", "form", "head"]
_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "blockquote",
    "pre",
    "table",
    "thead",
    "tbody",
    "tr",
    "figure",
    "figcaption",
    "caption",
    "address",
    "details",
    "summary",
    "body",
    "html",
    "hr",
}


def _looks_like_heading(line: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= 8
        and len(line) <= 60
        and line[-1] not in ".,;:!"
        and (line[0].isupper() or line[0].isdigit())
        and not _LIST_OR_QA.match(line)
    )


def text_blocks(text: str) -> tuple[list[Block], str]:
    """Headings and paragraphs of plain text (rules in the module doc)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if any(line.strip() for line in paragraph):
            blocks.append(Block(0, "\n".join(paragraph)))
        paragraph.clear()

    for number, raw in enumerate(lines):
        line = raw.strip()
        following = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if len(raw) <= _MAX_HEADING and (match := _ATX.match(raw)):
            flush()
            blocks.append(Block(len(match.group(1)), match.group(2)))
        elif line and _UNDERLINE.match(following) and not paragraph and not _UNDERLINE.match(line):
            flush()
            blocks.append(Block(1 if following.startswith("=") else 2, line))
        elif _UNDERLINE.match(line) and blocks and blocks[-1].level and not paragraph:
            continue  # the underline of the heading just read
        elif not line:
            flush()
        elif (
            _looks_like_heading(line)
            and not following[:1].islower()
            and (not paragraph or paragraph[-1].endswith((".", "!", "?")) and following)
        ):
            flush()
            blocks.append(Block(2, line))
        else:
            paragraph.append(line)
    flush()
    if blocks and blocks[0].level == 2 and not any(b.level == 1 for b in blocks):
        blocks[0] = Block(1, blocks[0].text)
    return blocks, ""


def markdown_blocks(text: str) -> tuple[list[Block], str]:
    """Headings, paragraphs, list items, table rows and code blocks of Markdown."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: list[Block] = []
    heading = 0
    row: list[str] | None = None
    for token in tokens:
        if token.type == "heading_open":
            heading = int(token.tag[1])
        elif token.type == "heading_close":
            heading = 0
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            blocks.append(Block(0, "; ".join(cell for cell in row or [] if cell)))
            row = None
        elif token.type == "inline" and row is not None:
            row.append(squash(_inline_text(token)))
        elif token.type == "inline":
            blocks.append(Block(heading, _inline_text(token)))
        elif token.type in ("fence", "code_block"):
            blocks.append(Block(0, token.content))
    return blocks, ""


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):  # inline HTML tags are markup, not text
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def html_blocks(text: str) -> tuple[list[Block], str]:
    """Headings and paragraphs of an HTML page (rules in the module doc)."""
    from bs4 import BeautifulSoup, Tag
    from bs4.element import NavigableString

    soup = BeautifulSoup(text, "lxml")
    title = squash(soup.title.get_text()) if soup.title else ""
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    blocks: list[Block] = []
    buffer: list[str] = []

    def flush() -> None:
        paragraph = "\n".join(squash(line) for line in "".join(buffer).split("\n") if line.strip())
        if paragraph:
            blocks.append(Block(0, paragraph))
        buffer.clear()

    end_block, end_cell = object(), object()
    stack: list[object] = [soup]  # explicit stack: deeply nested pages cannot exhaust recursion
    while stack:
        item = stack.pop()
        if item is end_block:
            flush()
        elif item is end_cell:
            buffer.append(";")
        elif isinstance(item, NavigableString):
            if type(item) is NavigableString:  # not a comment, CDATA or doctype
                buffer.append(str(item))
        elif not isinstance(item, Tag):
            continue
        elif item.name in _HEADING_TAGS:
            flush()
            blocks.append(Block(_HEADING_TAGS[item.name], item.get_text(" ")))
        elif item.name == "br":
            buffer.append("\n")
        else:
            if item.name in ("td", "th"):
                buffer.append(" ")
                stack.append(end_cell)
            elif item.name in _BLOCK_TAGS:
                flush()
                stack.append(end_block)
            stack.extend(reversed(list(item.children)))
    flush()
    blocks = [Block(b.level, b.text.rstrip(";").replace(" ;", ";")) for b in blocks]
    return blocks, title


def pdf_text(path: Path, max_characters: int, max_pages: int) -> tuple[str, str]:
    """The text of every page (pages separated by blank lines) and the metadata title."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise PermissionError("the PDF is encrypted")
    if len(reader.pages) > max_pages:
        raise OverflowError(f"the PDF has more than {max_pages} pages")
    pages: list[str] = []
    total = 0
    for page in reader.pages:
        pages.append(page.extract_text() or "")
        total += len(pages[-1])
        if total > max_characters:
            raise OverflowError(f"the PDF has more than {max_characters} characters of text")
    title = reader.metadata.title if reader.metadata and reader.metadata.title else ""
    return "\n\n".join(pages), squash(str(title))


def docx_blocks(path: Path) -> tuple[list[Block], str]:
    """Paragraphs (``Title``/``Heading N`` styles as headings) and table rows of a .docx file."""
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = list(dict.fromkeys(squash(cell.text) for cell in row.cells))
                blocks.append(Block(0, "; ".join(cell for cell in cells if cell)))
            continue
        style = (item.style.name if item.style is not None else "") or ""
        level = 1 if style == "Title" else _heading_level(style)
        blocks.append(Block(level, item.text))
    title = document.core_properties.title or ""
    return blocks, squash(title)


def _heading_level(style: str) -> int:
    match = re.fullmatch(r"Heading\s*([1-6])", style, re.IGNORECASE)
    return int(match.group(1)) if match else 0
