"""Documents -> records: every format on real files, FAQ detection, and every kind of bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.trainer.handbook_formats import HANDBOOK, write_docx, write_html, write_pdf, write_text
from trainer.documents import MAX_CHARACTERS, DocumentError, load_records, read_document
from trainer.records import ChatRecord, QARecord, Section

FAQ_QUESTIONS = [
    "Do you sell second-hand bicycles?",
    "Can I bring my dog into the shop?",
    "Do you offer cycling lessons?",
    "Which payment methods do you accept?",
]


def comparable(records: list) -> list[tuple]:
    """Records without their source, the em dash of the title as a plain dash (core PDF fonts)."""
    out = []
    for r in records:
        if isinstance(r, Section):
            out.append(("section", r.title.replace("\u2014", "-"), r.headings, r.text))
        else:
            out.append(("qa", r.question, r.answer))
    return out


def test_markdown_handbook_keeps_headings_and_finds_the_faq() -> None:
    document = read_document(HANDBOOK, "handbook.md")
    assert document.format == "markdown" and document.faq_pairs == 4
    sections = [r for r in document.records if isinstance(r, Section)]
    pairs = [r for r in document.records if isinstance(r, QARecord)]
    assert [p.question for p in pairs] == FAQ_QUESTIONS
    assert pairs[3].answer == "We accept cash, cards and the Harrowgate Town Voucher, but not cheques."
    assert {s.title for s in sections} == {"Lumen Lane Bicycles \u2014 Customer Handbook"}
    assert [s.headings for s in sections] == [
        (),
        ("Opening hours",),
        ("Location and contact",),
        ("Repairs and servicing",),
        ("Bike hire",),
        ("Returns and warranty",),
        ("Loyalty programme",),
    ]
    hire = sections[4].text
    assert hire.startswith("Hybrid bikes can be hired for 25 pounds per day.") and "\n" not in hire
    assert not any("Frequently asked" in " ".join(s.headings) for s in sections)  # nothing left but the pairs


@pytest.mark.parametrize("writer", [write_text, write_html, write_docx, write_pdf], ids=["txt", "html", "docx", "pdf"])
def test_every_prose_format_yields_the_same_records_as_markdown(writer, tmp_path: Path) -> None:
    path = writer(tmp_path / f"handbook.{writer.__name__.removeprefix('write_')}")
    document = read_document(path, path.name)
    assert document.format == {"txt": "text"}.get(path.suffix[1:], path.suffix[1:])
    assert comparable(document.records) == comparable(load_records(HANDBOOK, "handbook.md"))
    if path.suffix == ".html":  # script, style, nav and comments are gone
        text = " ".join(getattr(r, "text", "") + getattr(r, "answer", "") for r in document.records)
        assert "Ignore this script" not in text and "Shop menu" not in text and "color" not in text


def test_question_headings_and_qa_across_paragraphs(tmp_path: Path) -> None:
    page = tmp_path / "faq.html"
    page.write_text(
        "<h1>Acme Bakery FAQ</h1><h2>Do you bake on Sundays?</h2><p>No, the ovens rest on Sundays.</p>"
        "<p>Question: Is there gluten-free bread?</p><p>Answer: Yes, every Friday.</p>"
        "<h2>About us</h2><ul><li>Founded in 1999</li><li>Three bakers</li></ul>"
        "<table><tr><th>Loaf</th><th>Price</th></tr><tr><td>Rye</td><td>3 euros</td></tr></table>"
    )
    records = load_records(page, "faq.html")
    assert [(r.question, r.answer) for r in records if isinstance(r, QARecord)] == [
        ("Is there gluten-free bread?", "Yes, every Friday."),
        ("Do you bake on Sundays?", "No, the ovens rest on Sundays."),
    ]
    about = next(r for r in records if isinstance(r, Section) and r.headings == ("About us",))
    assert about.title == "Acme Bakery FAQ"
    assert about.text.splitlines() == ["Founded in 1999", "Three bakers", "Loaf; Price", "Rye; 3 euros"]


def test_bare_question_paragraphs_under_an_faq_heading(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Acme Bakery", level=1)
    document.add_heading("Why us?", level=2)
    document.add_paragraph("Why bake at home? Our bread is better.")
    document.add_heading("Frequently Asked Questions", level=2)
    document.add_paragraph().add_run("Do you deliver?").bold = True
    document.add_paragraph("Yes, on Fridays.")
    document.add_paragraph("Only within town.")
    document.add_paragraph().add_run("Can I pay by card?").bold = True
    document.add_paragraph("Yes, all cards.")
    document.save(str(tmp_path / "faq.docx"))
    page = tmp_path / "faq.html"
    page.write_text(
        "<h2>FAQ</h2><dl><dt>Do you deliver?</dt><dd>Yes, on Fridays. Only within town.</dd>"
        "<dt>Can I pay by card?</dt><dd>Yes, all cards.</dd></dl>"
    )
    wanted = [("Do you deliver?", "Yes, on Fridays. Only within town."), ("Can I pay by card?", "Yes, all cards.")]
    for path in (tmp_path / "faq.docx", page):
        records = load_records(path, path.name)
        assert [(r.question, r.answer) for r in records if isinstance(r, QARecord)][-2:] == wanted
    docx_records = load_records(tmp_path / "faq.docx", "faq.docx")
    assert docx_records[0] == QARecord("Why us?", "Why bake at home? Our bread is better.", "faq.docx")


def test_markdown_markup_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "Shop notes\n==========\n\n**Q:** Do you <b>deliver</b>?<br>\nA: Yes, see [the map](http://x.example).\n\n"
        "<script>alert('no')</script>\n\n## Prices\n\n- Tune-up: 45 pounds\n- Puncture: *12* pounds\n\n"
        "| Item | Price |\n|---|---|\n| Lock | 15 pounds |\n"
    )
    records = load_records(path, "notes.md")
    assert records == [
        QARecord("Do you deliver?", "Yes, see the map.", "notes.md"),
        Section(
            "Shop notes",
            ("Prices",),
            "Tune-up: 45 pounds\nPuncture: 12 pounds\nItem; Price\nLock; 15 pounds",
            "notes.md",
        ),
    ]


def test_chat_and_prompt_completion_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!", "weight": 1},
            ]
        },
        {"prompt": "Opening hours?", "completion": " 9:30 to 18:00"},
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Pri"}, {"type": "text", "text": "ce?"}]},
                {"role": "assistant", "content": "45 pounds."},
            ]
        },
        {
            "messages": [
                {"role": "developer", "content": "Formal."},
                {"role": "user", "content": "Price?"},
                {"role": "assistant", "content": "45 pounds."},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    document = read_document(path, "data.jsonl")
    assert document.format == "jsonl" and len(document.records) == 4 and document.faq_pairs == 0
    first, second, parts, _ = document.records
    assert parts.messages[0] == {"role": "user", "content": "Price?"}
    assert isinstance(first, ChatRecord) and first.messages[-1] == {"role": "assistant", "content": "Hello!"}
    assert second.messages == (
        {"role": "user", "content": "Opening hours?"},
        {"role": "assistant", "content": "9:30 to 18:00"},
    )
    assert second.source == "data.jsonl:2"


def test_csv_question_answer_any_case_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text('ID;Question;ANSWER\n1;"Do you open; on Mondays?";No.\n\n2;Phone?;"0161 555 0142\nor email"\n')
    records = load_records(path, "faq.csv")
    assert [(r.question, r.answer) for r in records] == [
        ("Do you open; on Mondays?", "No."),
        ("Phone?", "0161 555 0142\nor email"),
    ]
    assert read_document(path, "faq.csv").faq_pairs == 2


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfThe caf\xc3\xa9 opens at 8:00 every day.\n")
    (section,) = load_records(path, "bom.txt")
    assert section.text == "The caf\u00e9 opens at 8:00 every day."


def test_examples_load(tmp_path: Path) -> None:
    examples = HANDBOOK.parent
    csv_records = load_records(examples / "faq.csv", "faq.csv")
    chats = load_records(examples / "chat.jsonl", "chat.jsonl")
    assert len(csv_records) >= 5 and all(isinstance(r, QARecord) for r in csv_records)
    assert len(chats) >= 5 and all(isinstance(r, ChatRecord) for r in chats)


def refused(tmp_path: Path, name: str, content: bytes | str) -> DocumentError:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(DocumentError) as caught:
        load_records(path, name)
    assert caught.value.message.startswith(f"{name}:")
    return caught.value


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("empty.md", b"", "empty"),
        ("blank.txt", "  \n\n \t\n", "no text"),
        ("sheet.xlsx", "question,answer\n", "unsupported file type (.xlsx)"),
        ("README", "Some text.", "unsupported file type (no extension)"),
        ("latin1.txt", "Caf\u00e9 hours".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 3)"),
        ("nul.txt", b"abc\x00def", "binary"),
        ("fake.pdf", "just text", "not a valid PDF"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ntrailer\n%%EOF", "not a readable PDF"),
        ("fake.docx", b"PK\x03\x04 not really a zip", "not a valid DOCX"),
        ("page.html", "<html><script>alert(1)</script><nav>Menu</nav></html>", "no usable text"),
        ("bad.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": 1}\n', 'line 2: "prompt" and "completion"'),
        ("notjson.jsonl", '{"prompt": "a", "completion": "b"}\n\n{oops\n', "line 3 is not valid JSON"),
        ("keys.jsonl", '{"text": "x"}\n', 'line 1: expected "messages" or "prompt"/"completion" (keys found: text)'),
        (
            "last.jsonl",
            '{"messages": [{"role": "user", "content": "hi"}]}\n',
            "line 1: the last message must be the assistant's",
        ),
        (
            "role.jsonl",
            '{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}',
            "messages[0].role",
        ),
        ("nouser.jsonl", '{"messages": [{"role": "assistant", "content": "y"}]}', "no user message"),
        ("array.jsonl", "[1, 2]\n", "line 1: expected a JSON object"),
        (
            "tools.jsonl",
            '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null, '
            '"tool_calls": [{"id": "1"}]}]}',
            "messages[1] has tool calls",
        ),
        (
            "parts.jsonl",
            '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, '
            '{"role": "assistant", "content": "y"}]}',
            "messages[0].content parts must all be text parts",
        ),
        ("cols.csv", "q,a\nHi?,Hello\n", "must name a \"question\" and an \"answer\" column (found 'q', 'a')"),
        ("hole.csv", "question,answer\nHi?,Hello\nBye?,\n", "row 3 has an empty answer"),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(tmp_path: Path, name: str, content, says: str) -> None:
    error = refused(tmp_path, name, content)
    assert says in error.message and error.code == "invalid_file"


def test_pdf_without_text(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 50, style="F")  # a drawing, as a scanned page would be an image
    error = refused(tmp_path, "scan.pdf", bytes(pdf.output()))
    assert "no extractable text" in error.message and error.code == "invalid_file"


def test_docx_that_is_another_zip_or_broken_xml(tmp_path: Path) -> None:
    other = tmp_path / "other.docx"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(DocumentError, match="not a valid DOCX"):
        load_records(other, "other.docx")
    broken = write_docx(tmp_path / "broken.docx")
    with zipfile.ZipFile(broken) as source, zipfile.ZipFile(tmp_path / "b2.docx", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[: len(data) // 2] if item.filename == "word/document.xml" else data)
    with pytest.raises(DocumentError, match="not a readable DOCX file"):
        load_records(tmp_path / "b2.docx", "b2.docx")


def test_oversized_text_and_docx_bomb(tmp_path: Path) -> None:
    error = refused(tmp_path, "big.txt", "word " * (MAX_CHARACTERS // 5 + 1))
    assert error.code == "file_too_large"
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b" " * (40 * 1024 * 1024))  # 40 MiB of XML from ~40 KiB
    assert bomb.stat().st_size < 1024 * 1024
    with pytest.raises(DocumentError, match="unpacks to too much data") as caught:
        load_records(bomb, "bomb.docx")
    assert caught.value.code == "file_too_large"


def test_hostile_structure_is_read_without_blowing_up(tmp_path: Path) -> None:
    deep = tmp_path / "deep.html"
    deep.write_text("<div>" * 20_000 + "Deep text stays readable." + "</div>" * 20_000)
    (section,) = load_records(deep, "deep.html")
    assert section.text == "Deep text stays readable."
    run_on = tmp_path / "run-on.txt"
    run_on.write_text("Prices\n\n" + "1 " * 200_000 + "pounds.\n")
    (section,) = load_records(run_on, "run-on.txt")
    assert section.headings == () and section.title == "Prices"
