"""An uploaded file -> records, or a :class:`DocumentError` that says what is wrong with it.

:func:`read_document` picks the reader by the file's content first and its name second:

- content starting with ``%PDF-`` is a PDF, a ZIP holding ``word/document.xml`` is a DOCX,
  whatever the name says; a ``.pdf`` or ``.docx`` name on other content is a corrupt file;
- otherwise the extension decides: ``.txt`` (also ``.text``), ``.md``/``.markdown``,
  ``.html``/``.htm``, ``.jsonl``, ``.csv``. Anything else is refused as unsupported.
- a ``.jsonl`` file whose first line is an OpenAI preference pair is ``preference_jsonl``
  (:mod:`trainer.preference_data`): its :attr:`Document.pairs` are the data of a DPO job, it has
  no records, and :func:`load_records` refuses it (supervised training needs answers, not pairs);
  :func:`load_pairs` reads such a file and refuses every other.

Text formats must be UTF-8 (a UTF-8 byte-order mark is accepted); any other encoding is refused
with a message that says so and where. Limits against abuse: :data:`MAX_FILE_BYTES` on disk,
:data:`MAX_CHARACTERS` of text, :data:`MAX_PDF_PAGES`, and for DOCX (a ZIP) the uncompressed
sizes (all members, and the XML parts) and member count are checked from the ZIP directory
before anything is inflated (:data:`MAX_DOCX_UNCOMPRESSED`, :data:`MAX_DOCX_XML`,
:data:`MAX_DOCX_MEMBERS`); Python's zipfile never inflates a member past its declared size. Exceeding a size
limit raises code
``file_too_large``; every other refusal is ``invalid_file``: empty files, unsupported types,
corrupt files, PDFs without extractable text, bad encodings, wrong JSONL/CSV schemas, and
documents that yield no usable text.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from trainer.dataset_readers import csv_records, jsonl_records
from trainer.outline import outline_records
from trainer.preference_data import PreferencePair, is_preference_jsonl, preference_pairs
from trainer.prose_readers import docx_blocks, html_blocks, markdown_blocks, pdf_text, text_blocks
from trainer.records import ChatRecord, DocumentError, QARecord, Record, Section

__all__ = ["Document", "DocumentError", "load_pairs", "load_records", "read_document"]

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_CHARACTERS = 2_000_000
MAX_PDF_PAGES = 2_000
MAX_DOCX_UNCOMPRESSED = 128 * 1024 * 1024
MAX_DOCX_XML = 32 * 1024 * 1024
MAX_DOCX_MEMBERS = 10_000

_EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "jsonl",
    ".csv": "csv",
}


@dataclass(frozen=True)
class Document:
    """What a file yields: its detected ``format``, its records (or preference pairs) and its size
    in characters."""

    format: str
    records: list[Record]
    characters: int
    pairs: tuple[PreferencePair, ...] = ()

    @property
    def faq_pairs(self) -> int:
        return sum(isinstance(r, QARecord) for r in self.records)


def load_records(path: Path, filename: str) -> list[Record]:
    """The records of the file at ``path``, uploaded as ``filename``."""
    document = read_document(path, filename)
    if document.pairs:
        raise DocumentError(
            f"{filename}: holds preference pairs (input, preferred_output, non_preferred_output); "
            'train on it with method {"type": "dpo"}'
        )
    return document.records


def load_pairs(path: Path, filename: str) -> list[PreferencePair]:
    """The preference pairs of the file at ``path``, uploaded as ``filename``."""
    document = read_document(path, filename)
    if not document.pairs:
        raise DocumentError(
            f"{filename}: DPO needs preference JSONL (lines with input, preferred_output and "
            f"non_preferred_output); this file is {document.format}"
        )
    return list(document.pairs)


def read_document(path: Path, filename: str) -> Document:
    """Read, validate and parse one file (rules in the module doc)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DocumentError(f"{filename}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise DocumentError(f"{filename}: the file is over {MAX_FILE_BYTES // 2**20} MiB", "file_too_large")
    with path.open("rb") as handle:
        head = handle.read(8)
    kind = _detect(path, filename, head)
    if kind == "pdf":
        return _with_text(kind, _pdf(path, filename), filename)
    if kind == "docx":
        return _with_text(kind, _docx(path, filename), filename)
    text = _decode(path.read_bytes(), filename)
    if len(text) > MAX_CHARACTERS:
        raise DocumentError(f"{filename}: over {MAX_CHARACTERS:,} characters of text", "file_too_large")
    if not text.strip():
        raise DocumentError(f"{filename}: the file has no text")
    if kind == "jsonl" and is_preference_jsonl(text):
        pairs = preference_pairs(text, filename)
        return Document("preference_jsonl", [], sum(p.characters for p in pairs), tuple(pairs))
    if kind == "jsonl":
        records = jsonl_records(text, filename)
    elif kind == "csv":
        records = csv_records(text, filename)
    else:
        reader = {"text": text_blocks, "markdown": markdown_blocks, "html": html_blocks}[kind]
        blocks, title = reader(text)
        records = outline_records(blocks, filename, title)
    return _with_text(kind, records, filename)


def _detect(path: Path, filename: str, head: bytes) -> str:
    extension = Path(filename).suffix.lower()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") and _is_docx(path):
        return "docx"
    if extension in (".pdf", ".docx"):
        raise DocumentError(f"{filename}: not a valid {extension[1:].upper()} file (corrupt or mislabelled)")
    if extension not in _EXTENSIONS:
        shown = extension or "no extension"
        raise DocumentError(
            f"{filename}: unsupported file type ({shown}); use .txt, .md, .html, .pdf, .docx, .jsonl or .csv"
        )
    return _EXTENSIONS[extension]


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _decode(data: bytes, filename: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"{filename}: the text is not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8 and upload it again"
        ) from None
    if "\x00" in text:
        raise DocumentError(f"{filename}: binary content, not text")
    return text


def _pdf(path: Path, filename: str) -> list[Record]:
    try:
        text, title = pdf_text(path, MAX_CHARACTERS, MAX_PDF_PAGES)
    except OverflowError as error:
        raise DocumentError(f"{filename}: {error}", "file_too_large") from None
    except PermissionError as error:
        raise DocumentError(f"{filename}: {error}; upload it without a password") from None
    except Exception as error:
        raise DocumentError(f"{filename}: not a readable PDF ({type(error).__name__})") from None
    if not text.strip():
        raise DocumentError(f"{filename}: the PDF has no extractable text (scanned pages need OCR first)")
    blocks, _ = text_blocks(text)
    return outline_records(blocks, filename, title)


def _docx(path: Path, filename: str) -> list[Record]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        raise DocumentError(f"{filename}: not a readable DOCX file") from None
    xml = sum(m.file_size for m in members if m.filename.endswith((".xml", ".rels")))
    if (
        len(members) > MAX_DOCX_MEMBERS
        or sum(m.file_size for m in members) > MAX_DOCX_UNCOMPRESSED
        or xml > MAX_DOCX_XML
    ):
        raise DocumentError(f"{filename}: the DOCX unpacks to too much data", "file_too_large")
    try:
        blocks, title = docx_blocks(path)
    except Exception as error:
        raise DocumentError(f"{filename}: not a readable DOCX file ({type(error).__name__})") from None
    if sum(len(b.text) for b in blocks) > MAX_CHARACTERS:
        raise DocumentError(f"{filename}: over {MAX_CHARACTERS:,} characters of text", "file_too_large")
    return outline_records(blocks, filename, title)


def _with_text(kind: str, records: list[Record], filename: str) -> Document:
    characters = sum(_characters(r) for r in records)
    if not records or characters == 0:
        raise DocumentError(f"{filename}: no usable text found")
    return Document(kind, records, characters)


def _characters(record: Record) -> int:
    if isinstance(record, ChatRecord):
        return sum(len(m["content"]) for m in record.messages)
    if isinstance(record, QARecord):
        return len(record.question) + len(record.answer)
    assert isinstance(record, Section)
    return len(record.text)
