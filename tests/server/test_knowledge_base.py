"""The knowledge base on real tantivy indexes and the shipped MiniLM in a temporary directory:
meaning finds what words miss, fusion keeps what both agree on, files without vectors still
search by words, vectors follow their file (replaced, deleted, per tenant), a slow or
unreadable embedding costs only the ranking by meaning, and the backfill gives such files their
vectors later."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.jobs.training_files import FileStore
from server.knowledge.dense_index import DenseIndex
from server.knowledge.embedder_threads import EmbedderThreads
from server.knowledge.knowledge_base import KnowledgeBase, fuse
from server.knowledge.passage_index import Passage, PassageIndex
from server.knowledge.vector_backfill import backfill

SHOP = [
    {"heading": "Shop > Hire", "text": "Bikes are available for hire at 15 euros a day.", "start": 0, "end": 47},
    {
        "heading": "FAQ > Used",
        "text": "Refurbished second-hand bicycles go on sale every Saturday.",
        "start": 49,
        "end": 108,
    },
    {"heading": "Shop > Hours", "text": "We open at nine and close at six.", "start": 110, "end": 143},
]
QUESTION = "Are pre-owned bikes available?"  # no word of the answer; "bikes" is in the wrong passage


@pytest.fixture(scope="module")
def embedder(embedding_model_dir: Path) -> EmbedderThreads:
    return EmbedderThreads(embedding_model_dir)


def knowledge_base(root: Path, embedder: EmbedderThreads | None, max_vectors: int = 100) -> KnowledgeBase:
    return KnowledgeBase(PassageIndex(root / "words"), DenseIndex(root / "vectors"), embedder, max_vectors, 60.0)


def vectors_file(root: Path, tenant: str, file_id: str) -> Path:
    return root / "vectors" / tenant / f"{file_id}.safetensors"


def test_meaning_finds_the_passage_that_words_miss(tmp_path: Path, embedder: EmbedderThreads) -> None:
    kb = knowledge_base(tmp_path, embedder)
    assert kb.add_file("acme", "file-shop", "shop.md", SHOP) == 3
    assert vectors_file(tmp_path, "acme", "file-shop").is_file()
    assert [p.heading for p in kb.passages.search("acme", QUESTION, ["file-shop"], 4)] == ["Shop > Hire"]  # words
    assert kb.dense_search("acme", QUESTION, ["file-shop"], 1)[0].heading == "FAQ > Used"
    served = {p.heading: p for p in kb.search("acme", QUESTION, ["file-shop"], 2)}
    assert set(served) == {"Shop > Hire", "FAQ > Used"}  # each ranking's best
    used = served["FAQ > Used"]
    assert (used.text, used.filename, used.start, used.end) == (SHOP[1]["text"], "shop.md", 49, 108)
    assert kb.search("acme", "When do you close?", ["file-shop"], 1)[0].heading == "Shop > Hours"


def test_without_vectors_the_search_is_by_words(tmp_path: Path, embedder: EmbedderThreads) -> None:
    over_the_cap = knowledge_base(tmp_path / "cap", embedder, max_vectors=2)
    over_the_cap.add_file("acme", "file-shop", "shop.md", SHOP)
    assert not vectors_file(tmp_path / "cap", "acme", "file-shop").exists()
    no_model = knowledge_base(tmp_path / "none", EmbedderThreads(tmp_path / "no-model-here"))
    no_model.add_file("acme", "file-shop", "shop.md", SHOP)
    for kb in (over_the_cap, no_model):
        assert kb.dense_search("acme", QUESTION, ["file-shop"], 4) == []
        assert [p.heading for p in kb.search("acme", QUESTION, ["file-shop"], 2)] == [
            p.heading for p in kb.passages.search("acme", QUESTION, ["file-shop"], 2)
        ]


def test_vectors_follow_their_file(tmp_path: Path, embedder: EmbedderThreads) -> None:
    kb = knowledge_base(tmp_path, embedder)
    kb.add_file("acme", "file-shop", "shop.md", SHOP)
    kb.add_file("globex", "file-g", "g.md", SHOP[:1])
    assert kb.dense_search("acme", QUESTION, ["file-shop"], 1)[0].heading == "FAQ > Used"  # now kept in memory
    assert [p.file_id for p in kb.search("globex", QUESTION, ["file-shop", "file-g"], 4)] == ["file-g"]
    kb.add_file("acme", "file-shop", "shop.md", [SHOP[2]])  # replaced: the kept rows go too
    assert [p.heading for p in kb.dense_search("acme", QUESTION, ["file-shop"], 4)] == ["Shop > Hours"]
    kb.remove_file("acme", "file-shop")
    assert not vectors_file(tmp_path, "acme", "file-shop").exists()
    assert kb.search("acme", QUESTION, ["file-shop"], 4) == []
    kb.remove_tenant("globex")
    assert not (tmp_path / "vectors" / "globex").exists() and kb.search("globex", "bikes", ["file-g"], 4) == []


def test_a_slow_embedding_or_an_unreadable_vectors_file_leaves_words(tmp_path: Path, embedder: EmbedderThreads) -> None:
    slow = KnowledgeBase(PassageIndex(tmp_path / "words"), DenseIndex(tmp_path / "vectors"), embedder, 100, 1e-9)
    slow.add_file("acme", "file-shop", "shop.md", SHOP * 20)  # 60 passages cannot be embedded in a nanosecond
    assert not vectors_file(tmp_path, "acme", "file-shop").exists()
    kb = knowledge_base(tmp_path / "torn", embedder)
    kb.add_file("acme", "file-shop", "shop.md", SHOP)
    vectors_file(tmp_path / "torn", "acme", "file-shop").write_bytes(b"not safetensors")
    fresh = knowledge_base(tmp_path / "torn", embedder)  # nothing kept in memory yet
    assert [p.heading for p in fresh.search("acme", QUESTION, ["file-shop"], 1)] == ["Shop > Hire"]


def test_vectors_of_another_model_are_skipped(tmp_path: Path, embedder: EmbedderThreads) -> None:
    """Vectors written by a model of another width (the operator changed SWAPLORA_EMBEDDING_MODEL)
    are not multiplied with this model's queries: that file is searched by its words."""
    kb = knowledge_base(tmp_path, embedder)
    kb.add_file("acme", "file-shop", "shop.md", SHOP)
    kb.dense.write("acme", "file-shop", [p["start"] for p in SHOP], torch.ones(3, 8))
    fresh = knowledge_base(tmp_path, embedder)
    assert fresh.dense_search("acme", QUESTION, ["file-shop"], 4) == []
    assert [p.heading for p in fresh.search("acme", QUESTION, ["file-shop"], 1)] == ["Shop > Hire"]


def test_fusion_adds_the_weighted_reciprocal_ranks() -> None:
    a, b, c = (Passage("file-x", "x.md", h, h, i, i + 1, 0.0) for i, h in enumerate("abc"))
    alone = fuse([(1.0, [a, b])], 2)  # one ranking keeps its order
    assert [p.heading for p in alone] == ["a", "b"] and [p.score for p in alone] == [1 / 61, 1 / 62]
    fused = fuse([(1.0, [a, b, c]), (6.0, [c, b])], 3)
    assert [p.heading for p in fused] == ["c", "b", "a"] and fused[0].score == pytest.approx(1 / 63 + 6 / 61)
    assert fuse([(1.0, [a]), (1.0, [])], 0) == []


def test_the_backfill_embeds_a_file_that_was_left_by_words(tmp_path: Path, embedder: EmbedderThreads) -> None:
    """Embedded a chunk at a time, each passage gets its own vector (the order survives the chunks)."""
    busy = KnowledgeBase(PassageIndex(tmp_path / "words"), DenseIndex(tmp_path / "vectors"), embedder, 100, 1e-9)
    busy.add_file("acme", "file-shop", "shop.md", SHOP)  # timed out: searched by words
    assert not vectors_file(tmp_path, "acme", "file-shop").exists()
    kb = knowledge_base(tmp_path, embedder)
    assert kb.backfill_file("acme", "file-shop", chunk=2)
    assert kb.dense_search("acme", QUESTION, ["file-shop"], 1)[0].heading == "FAQ > Used"
    for passage in SHOP:
        assert kb.dense_search("acme", passage["text"], ["file-shop"], 1)[0].start == passage["start"]
    assert not kb.backfill_file("acme", "file-shop")  # has them now
    assert not kb.backfill_file("acme", "file-none")  # no passages: nothing to embed


def test_the_backfill_replaces_another_models_vectors_and_respects_the_cap(
    tmp_path: Path, embedder: EmbedderThreads
) -> None:
    kb = knowledge_base(tmp_path, embedder)
    kb.add_file("acme", "file-shop", "shop.md", SHOP)
    kb.dense.write("acme", "file-shop", [p["start"] for p in SHOP], torch.ones(3, 8))
    assert kb.dense.width("acme", "file-shop") == 8
    assert kb.backfill_file("acme", "file-shop")
    assert kb.dense.width("acme", "file-shop") == embedder.width()
    capped = knowledge_base(tmp_path / "cap", embedder, max_vectors=2)
    capped.add_file("acme", "file-shop", "shop.md", SHOP)
    assert not capped.backfill_file("acme", "file-shop")
    assert not vectors_file(tmp_path / "cap", "acme", "file-shop").exists()


def test_the_backfill_walks_every_tenants_files(tmp_path: Path, embedder: EmbedderThreads) -> None:
    files = FileStore(tmp_path / "db.sqlite", tmp_path / "files")
    without_model = knowledge_base(tmp_path, EmbedderThreads(tmp_path / "no-model-here"))
    assert backfill(without_model, files) == 0
    uploaded = []
    for tenant in ("acme", "globex"):
        source = tmp_path / f"{tenant}.md"
        source.write_text("# Shop")
        stored = files.add(tenant, "shop.md", "fine-tune", source, {"format": "markdown"})
        without_model.add_file(tenant, stored.id, "shop.md", SHOP)
        uploaded.append(stored)
    chat = tmp_path / "chat.jsonl"
    chat.write_text("{}")
    files.add("acme", "chat.jsonl", "fine-tune", chat, {"format": "chat_jsonl"})  # no passages: never embedded
    assert backfill(without_model, files) == 0
    kb = knowledge_base(tmp_path, embedder)
    assert backfill(kb, files) == 2
    assert all(vectors_file(tmp_path, f.tenant, f.id).is_file() for f in uploaded)
    assert backfill(kb, files) == 0
