"""The per-tenant passage index on real tantivy indexes in a temporary directory, and the
grounding of a chat turn: ranking, file filters, tenant isolation, deletion, hostile queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.grounding_template import INSTRUCTION
from adapters.ids import InvalidId
from server.api.chat_request import ChatMessage
from server.knowledge.grounding import citations, ground, retrieval_query
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


def test_grounding_rewrites_the_last_user_turn_within_the_budget(index: PassageIndex) -> None:
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Do you rent bikes?"),
        ChatMessage(role="assistant", content="Yes."),
        ChatMessage(role="user", content="How much per day?"),
    ]
    assert retrieval_query(messages) == "Do you rent bikes?\nHow much per day?"
    hits = index.search("acme", retrieval_query(messages), ["file-bikes"], 3)
    grounded, used = ground(messages, hits, Words(), budget_tokens=15)
    assert used == hits[:1]  # the second passage would pass 15 tokens
    assert grounded[:3] == messages[:3] and grounded[3].role == "user"
    text = grounded[3].text()
    assert text.startswith("Passages:\n\n[1] Shop > Rentals\nCity bikes rent for 15 euros a day.")
    assert text.endswith(f"{INSTRUCTION}\n\nQuestion: How much per day?")
    assert citations(used) == [
        {
            "index": 1,
            "file_id": "file-bikes",
            "filename": "bikes.md",
            "heading": "Shop > Rentals",
            "start": 0,
            "end": 35,
        }
    ]
    assert ground(messages, [], Words(), 100) == (messages, [])
    assert ground(messages, hits, Words(), 1) == (messages, [])  # nothing fits
