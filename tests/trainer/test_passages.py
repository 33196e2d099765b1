"""A document's passages for retrieval: headings, sizes, spans, and what yields none."""

from __future__ import annotations

from pathlib import Path

from trainer.check import check_file
from trainer.documents import read_document
from trainer.passages import MAX_PASSAGE_CHARS, document_passages

ROOT = Path(__file__).resolve().parents[2]


def test_the_handbook_yields_headed_passages_with_consistent_spans() -> None:
    passages = document_passages(read_document(ROOT / "examples" / "handbook.md", "handbook.md"))
    assert len(passages) >= 5
    assert any(p["heading"].endswith("> Returns and warranty") for p in passages)
    joined = "\n\n".join(p["text"] for p in passages)
    for passage in passages:
        assert joined[passage["start"] : passage["end"]] == passage["text"]
        assert 0 < len(passage["text"]) <= MAX_PASSAGE_CHARS


def test_long_prose_is_cut_at_paragraphs_then_words(tmp_path: Path) -> None:
    long_line = " ".join(["word"] * 600)  # 2999 characters on one line
    doc = tmp_path / "long.md"
    doc.write_text(
        "# Title\n\n## Part\n\n" + "\n\n".join(f"Paragraph {i} " + "x " * 60 for i in range(20)) + f"\n\n{long_line}\n"
    )
    passages = document_passages(read_document(doc, "long.md"))
    assert all(len(p["text"]) <= MAX_PASSAGE_CHARS for p in passages)
    assert all(p["heading"] == "Title > Part" for p in passages)
    assert sum(p["text"].count("word") for p in passages) == 600


def test_chat_data_yields_no_passages_and_check_writes_them(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
    out = tmp_path / "passages.json"
    assert check_file(chat, "chat.jsonl", out)["ok"] and out.read_text() == "[]"
    assert check_file(ROOT / "examples" / "handbook.md", "handbook.md", out)["ok"]
    assert '"heading"' in out.read_text()
