"""Retrieval from a tenant's documents against the live server: an uploaded handbook is indexed,
the tenant turns retrieval on, and chat answers with the passages it used as ``citations`` (the
reply, and the finish chunk of a stream), found by words and meaning; the setting is validated,
another tenant's files are out of reach, and deleting the file takes its passages (and their
vectors) out of every answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import Server, auth
from tests.integration.helpers import HANDBOOK, HANDBOOK_QUESTION, set_retrieval, upload_document

pytestmark = pytest.mark.integration
QUESTION = HANDBOOK_QUESTION


def chat(http: httpx.Client, key: str, **extra: Any) -> dict[str, Any]:
    body = {"model": "base", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, **extra}
    response = http.post("/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_chat_cites_the_passages_it_was_given(
    http: httpx.Client, server: Server, tenant_keys: dict[str, str], acme: openai.OpenAI
) -> None:
    key = tenant_keys["acme"]
    handbook = upload_document(http, key)
    assert "citations" not in chat(http, key)  # retrieval is off by default
    assert set_retrieval(http, key, "acme", {"enabled": True, "files": [handbook], "top_k": 2}).status_code == 200
    try:
        reply = chat(http, key)
        cited = reply["citations"]
        # The handbook fits the passage budget: all 11 of its passages are in the prompt (whole
        # mode), and the citations are the top_k search hits, each with its number there.
        assert 1 <= len(cited) <= 2 and all(1 <= c["index"] <= 11 for c in cited)
        assert cited[0]["file_id"] == handbook and cited[0]["filename"] == "handbook.md"
        assert cited[0]["heading"].endswith("Returns and warranty"), cited
        text = HANDBOOK.read_text()
        assert "5-year warranty on the frame" in text and cited[0]["end"] > cited[0]["start"] >= 0
        # The passages went into the prompt: the whole handbook, about 600 tokens.
        assert reply["usage"]["prompt_tokens"] > chat_without(http, key)["usage"]["prompt_tokens"] + 400

        # Streamed, through the official client: the finish chunk carries the same citations.
        stream = acme.chat.completions.create(
            model="base", messages=[{"role": "user", "content": QUESTION}], max_tokens=8, stream=True
        )
        finishes = [c for c in stream if c.choices and c.choices[0].finish_reason]
        assert [f["file_id"] for f in (finishes[-1].model_extra or {})["citations"]] == [c["file_id"] for c in cited]

        # Deleting the file takes its passages out of every answer.
        assert http.delete(f"/v1/files/{handbook}", headers=auth(key)).status_code == 200
        assert chat(http, key)["citations"] == []
    finally:
        set_retrieval(http, key, "acme", {"enabled": False, "files": []})


def test_citations_find_by_meaning_what_words_miss(
    http: httpx.Client, server: Server, tenant_keys: dict[str, str]
) -> None:
    """The upload embedded the handbook's passages (the shipped MiniLM, in the server process); a
    question that shares no word with its answer (BM25 alone ranks "Bike hire" first) is cited
    with the FAQ that answers it; deleting the file deletes its vectors."""
    key = tenant_keys["acme"]
    handbook = upload_document(http, key)
    vectors = server.data / "knowledge-vectors" / "acme" / f"{handbook}.safetensors"
    assert vectors.is_file()
    assert set_retrieval(http, key, "acme", {"enabled": True, "files": [handbook], "top_k": 2}).status_code == 200
    try:
        question = [{"role": "user", "content": "Are pre-owned bikes available?"}]
        cited = chat(http, key, messages=question)["citations"]
        assert cited[0]["heading"] == "Do you sell second-hand bicycles?", cited  # words alone: second
    finally:
        set_retrieval(http, key, "acme", {"enabled": False, "files": []})
        assert http.delete(f"/v1/files/{handbook}", headers=auth(key)).status_code == 200
    assert not vectors.exists()


def test_files_larger_than_the_budget_are_searched_and_the_hits_that_fit_go_in(
    http: httpx.Client, tenant_keys: dict[str, str], acme: openai.OpenAI
) -> None:
    """Search mode: four handbooks (about 2,800 tokens of passages) do not fit the passage budget
    (1,024 tokens), so the prompt carries the fused search's best hits that fit, and the citations
    (ready before generation here) are those hits, numbered as in the prompt, in the reply and
    in a stream's finish chunk."""
    key = tenant_keys["acme"]
    books = [HANDBOOK, *sorted((ROOT / "bench" / "grounding_eval").glob("*.md"))]
    files = [upload_document(http, key, path) for path in books if path.name != "README.md"]
    assert len(files) == 4
    assert set_retrieval(http, key, "acme", {"enabled": True, "files": files, "top_k": 4}).status_code == 200
    try:
        question = [{"role": "user", "content": "Are pre-owned bikes available?"}]
        reply = chat(http, key, messages=question)
        cited = reply["citations"]
        assert cited[0]["heading"] == "Do you sell second-hand bicycles?" and cited[0]["file_id"] == files[0], cited
        assert 1 <= len(cited) <= 4 and sorted(c["index"] for c in cited) == list(range(1, len(cited) + 1))
        assert 100 < reply["usage"]["prompt_tokens"] < 1024 + 200  # the budget, not the 2,800 tokens
        stream = acme.chat.completions.create(model="base", messages=question, max_tokens=4, stream=True)
        finishes = [c for c in stream if c.choices and c.choices[0].finish_reason]
        assert (finishes[-1].model_extra or {})["citations"] == cited
    finally:
        set_retrieval(http, key, "acme", {"enabled": False, "files": []})
        for file_id in files:
            http.delete(f"/v1/files/{file_id}", headers=auth(key))


def chat_without(http: httpx.Client, key: str) -> dict[str, Any]:
    """The same chat with acme's retrieval briefly off (a partial ``retrieval`` object keeps the
    other fields: the files stay named)."""
    set_retrieval(http, key, "acme", {"enabled": False})
    try:
        return chat(http, key)
    finally:
        set_retrieval(http, key, "acme", {"enabled": True})


@pytest.mark.parametrize(
    ("retrieval", "param"),
    [
        ({"top_k": 9}, "retrieval.top_k"),
        ({"top_k": 0}, "retrieval.top_k"),
        ({"files": ["file-000000000000000000000000"]}, "retrieval.files"),
        ({"files": "file-x"}, "retrieval.files"),
        ({"enabled": "yes"}, "retrieval.enabled"),
        ({"colour": "red"}, "retrieval.colour"),
    ],
)
def test_bad_retrieval_settings_are_refused(
    http: httpx.Client, tenant_keys: dict[str, str], retrieval: Any, param: str
) -> None:
    response = set_retrieval(http, tenant_keys["acme"], "acme", retrieval)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.json()


def test_another_tenants_file_cannot_be_named(http: httpx.Client, tenant_keys: dict[str, str]) -> None:
    theirs = upload_document(http, tenant_keys["globex"])
    try:
        response = set_retrieval(http, tenant_keys["acme"], "acme", {"enabled": True, "files": [theirs]})
        assert response.status_code == 400 and response.json()["error"]["code"] == "file_not_found"
    finally:
        http.delete(f"/v1/files/{theirs}", headers=auth(tenant_keys["globex"]))
    retrieval = set_retrieval(http, tenant_keys["acme"], "acme", {"enabled": False}).json()["retrieval"]
    assert theirs not in json.dumps(retrieval) and retrieval["enabled"] is False
