"""The per-tenant passage index on real tantivy indexes in a temporary directory, and the
grounding of a chat turn: ranking, file filters, tenant isolation, deletion, hostile queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.grounding_template import INSTRUCTION
from adapters.ids import InvalidId
from server.api.chat_request import ChatMessage
from server.knowledge.grounding import citations, ground, prompt_passages, retrieval_query
from server.knowledge.passage_index import MAX_QUERY_TERMS, PassageIndex, query_words

BIKES = [
    {"heading": "Shop > Rentals", "text": "City bikes rent for 15 euros a day.", "start": 0, "end": 35},
    {"heading": "Shop > Warranty", "text": "New bicycles have a 5-year frame warranty.", "start": 37, "end": 79},
    {"heading": "Shop > Hours", "text": "We open at nine and close at six.", "start": 81, "end": 114},
]
SECRET = [{"heading": "Internal", "text": "The warranty safe code is 4711.", "start": 0, "end": 31}]


@pytest.fixture
def index(tmp_path: Path) -> PassageIndex:
    knowledge = PassageIndex(tmp_path / "knowledge")
    assert knowledge.add_file("acme", "file-bikes", "bikes.md", BIKES) == 3
    knowledge.add_file("acme", "file-secret", "secret.md", SECRET)
    knowledge.add_file("globex", "file-g", "g.md", [{"heading": "", "text": "Bikes rent free.", "start": 0, "end": 16}])
    return knowledge


def test_the_best_passage_of_the_named_files_comes_first(index: PassageIndex) -> None:
    hits = index.search("acme", "How much does renting a bike cost?", ["file-bikes"], 2)
    assert hits[0].heading == "Shop > Rentals" and hits[0].file_id == "file-bikes" and hits[0].filename == "bikes.md"
    assert (hits[0].start, hits[0].end) == (0, 35) and len(hits) <= 2
    warranty = index.search("acme", "warranty", ["file-bikes"], 4)
    assert [h.heading for h in warranty] == ["Shop > Warranty"]  # the secret file is not named
    assert {h.file_id for h in index.search("acme", "warranty", ["file-bikes", "file-secret"], 4)} == {
        "file-bikes",
        "file-secret",
    }


def test_tenants_never_see_each_others_passages(index: PassageIndex) -> None:
    assert index.search("globex", "warranty bikes", ["file-bikes", "file-secret"], 4) == []
    assert [h.file_id for h in index.search("globex", "bikes", ["file-g"], 4)] == ["file-g"]
    with pytest.raises(InvalidId):
        index.search("../acme", "bikes", ["file-bikes"], 4)


def test_removing_a_file_removes_its_passages_and_re_adding_replaces_them(index: PassageIndex) -> None:
    index.remove_file("acme", "file-bikes")
    assert index.search("acme", "bikes warranty hours", ["file-bikes"], 4) == []
    index.add_file("acme", "file-secret", "secret.md", SECRET)  # again: replaced, not doubled
    assert len(index.search("acme", "warranty safe code", ["file-secret"], 4)) == 1
    index.remove_tenant("acme")
    assert index.search("acme", "warranty", ["file-secret"], 4) == []
    index.remove_file("nobody", "file-x")  # no index yet: nothing to do


def test_kept_indexes_serve_every_write_and_stay_bounded(
    index: PassageIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.knowledge.passage_index.MAX_OPEN_INDEXES", 2)
    assert index.search("acme", "warranty", ["file-bikes"], 4)  # acme's index is now kept
    index.add_file("acme", "file-new", "new.md", [{"heading": "", "text": "Tandems rent too.", "start": 0, "end": 17}])
    assert [h.file_id for h in index.search("acme", "tandems", ["file-new"], 4)] == ["file-new"]
    for tenant in ("t1", "t2", "t3"):  # more tenants than kept: the oldest are closed, none lost
        index.add_file(tenant, "file-x", "x.md", BIKES)
    assert len(index._open) == 2
    assert index.search("acme", "tandems", ["file-new"], 4) and index.search("t1", "warranty", ["file-x"], 4)
    again = PassageIndex(tmp_path / "knowledge")  # what a restarted server opens
    assert [h.file_id for h in again.search("acme", "tandems", ["file-new"], 4)] == ["file-new"]


@pytest.mark.parametrize(
    "query",
    ["file_id:file-secret", "warranty OR file_id:*", '"unterminated', "text:[a TO z]", "((((", "*", "a" * 10_000],
)
def test_query_syntax_from_a_user_is_only_words(index: PassageIndex, query: str) -> None:
    hits = index.search("acme", query, ["file-bikes"], 4)
    assert all(h.file_id == "file-bikes" for h in hits)


def test_query_words_are_bounded() -> None:
    words = query_words(" ".join(f"w{i}" for i in range(100)) + " " + "x" * 100)
    assert len(words) == MAX_QUERY_TERMS and all(len(w) <= 40 for w in words)
    assert query_words("Rent RENT rent? AND or") == ["rent", "and", "or"]


class Words:
    """A stand-in tokenizer with the interface ground() uses: one token per word."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> object:
        return type("Encoded", (), {"input_ids": text.split()})()


def test_file_passages_are_every_passage_in_document_order_or_none_past_the_limit(index: PassageIndex) -> None:
    every = index.file_passages("acme", ["file-secret", "file-bikes"], 10)
    assert every is not None
    assert [(p.file_id, p.start) for p in every] == [
        ("file-secret", 0),
        ("file-bikes", 0),
        ("file-bikes", 37),
        ("file-bikes", 81),
    ]
    assert index.file_passages("acme", ["file-bikes"], 2) is None  # three passages: over the limit
    assert index.file_passages("globex", ["file-bikes"], 10) == []  # not this tenant's
    assert index.file_passages("acme", [], 10) == []


def conversation() -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Do you rent bikes?"),
        ChatMessage(role="assistant", content="Yes."),
        ChatMessage(role="user", content="How much per day?"),
    ]


def test_a_small_document_goes_in_whole_in_document_order_whatever_the_hits(index: PassageIndex) -> None:
    messages = conversation()
    assert retrieval_query(messages) == "Do you rent bikes?\nHow much per day?"
    hits = index.search("acme", retrieval_query(messages), ["file-bikes"], 1)
    every = index.file_passages("acme", ["file-bikes"], 10)
    used = prompt_passages(every, hits, Words(), budget_tokens=100)
    assert [p.start for p in used] == [0, 37, 81]  # all three, in document order
    grounded = ground(messages, used)
    assert grounded[:3] == messages[:3] and grounded[3].role == "user"
    text = grounded[3].text()
    assert text.startswith("Passages:\n\n[1] Rentals\nCity bikes rent for 15 euros a day.\n\n[2] Warranty")
    assert text.endswith(f"{INSTRUCTION}\n\nQuestion: How much per day?")
    # The same prompt for another question, up to the question: the prefix cache reuses it.
    other = ground([ChatMessage(role="user", content="Opening hours?")], used)[0].text()
    assert other.split("Question:")[0] == text.split("Question:")[0]
    assert citations(used, hits) == [
        {
            "index": 1,
            "file_id": "file-bikes",
            "filename": "bikes.md",
            "heading": "Shop > Rentals",
            "start": 0,
            "end": 35,
        }
    ]


def test_a_larger_document_gives_the_best_hits_that_fit_in_document_order(index: PassageIndex) -> None:
    hits = index.search("acme", "warranty, rent or hours?", ["file-bikes"], 3)
    every = index.file_passages("acme", ["file-bikes"], 10)
    used = prompt_passages(every, hits, Words(), budget_tokens=30)  # the file: 44 "tokens", a passage 14-15
    assert len(used) == 2 and [p.start for p in used] == sorted(p.start for p in used)
    assert [p.start for p in used] == sorted(p.start for p in hits[:2])
    cited = citations(used, hits)
    assert [c["start"] for c in cited] == [h.start for h in hits[:2]]  # best first
    assert [used[c["index"] - 1].start for c in cited] == [c["start"] for c in cited]
    assert prompt_passages(None, hits, Words(), 30) == hits[:2]  # too many passages for whole mode
    assert ground(conversation(), []) == conversation()
    assert prompt_passages(every, hits, Words(), 1) == []  # nothing fits
