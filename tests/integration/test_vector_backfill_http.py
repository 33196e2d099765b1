"""Files left without vectors get them later, against the live server: a handbook uploaded while
the embedding model is not there yet is searched by its words alone (a question that shares no
word with its answer is cited with the wrong passage); once the model appears, the background
backfill (every second here, ``SWAPLORA_RETRIEVAL_BACKFILL_S``) embeds the file and the same
question is cited with the passage that answers it, with no new upload and no restart."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import auth, start_server, stop_server
from tests.integration.helpers import new_tenant, set_retrieval, upload_document

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "Are pre-owned bikes available?"}]
ANSWER = "Do you sell second-hand bicycles?"
"""The FAQ that answers QUESTION; by words alone "Bike hire" ranks first."""


def first_citation(http: httpx.Client, key: str) -> str:
    body = {"model": "base", "messages": QUESTION, "max_tokens": 1}
    response = http.post("/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["citations"][0]["heading"])


def test_a_file_uploaded_before_the_embedding_model_is_embedded_later(
    embedded_model_dir: Path, embedding_model_dir: Path, tmp_path: Path
) -> None:
    later = tmp_path / "embedding-model"  # empty until the test puts the model there
    later.mkdir()
    srv = start_server(
        embedded_model_dir,
        tmp_path / "data",
        secrets.token_hex(16),
        "--no-ui",
        EMBEDDING_MODEL=str(later),
        RETRIEVAL_BACKFILL_S="1",
    )
    try:
        key = new_tenant(srv, "acme")
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            handbook = upload_document(http, key)
            vectors = srv.data / "knowledge-vectors" / "acme" / f"{handbook}.safetensors"
            assert not vectors.exists()
            assert (
                set_retrieval(http, key, "acme", {"enabled": True, "files": [handbook], "top_k": 1}).status_code == 200
            )
            assert first_citation(http, key) != ANSWER  # words only
            files = sorted(embedding_model_dir.iterdir(), key=lambda p: p.name == "config.json")
            for path in files:  # config.json, which says a model is there, comes last
                os.link(path, later / path.name)
            deadline = time.monotonic() + 120
            while not vectors.is_file() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert vectors.is_file(), srv.log()
            assert first_citation(http, key) == ANSWER
    finally:
        stop_server(srv.process)
