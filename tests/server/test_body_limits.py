"""Bodies are capped while they stream in, and a prompt that cannot fit is refused before any
tokenizing (the stranger's 300 MB body and 10 MB prompt of the security review)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.base_model import load_tokenizer
from server.errors import APIError
from server.prompt import longest_token_bytes, refuse_what_cannot_fit
from tests.server.helpers import ADMIN, CHAT, assert_error, bearer


def test_a_chat_body_over_the_cap_is_413_declared_or_streamed(cors_env: dict[str, Any]) -> None:
    headers = {**bearer(cors_env["secret"]["acme"]), "Content-Type": "application/json"}
    big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 1)}]}).encode()
    assert_error(
        cors_env["client"].post("/v1/chat/completions", content=big, headers=headers), 413, "request_too_large"
    )

    def chunks():  # no Content-Length: the running count decides
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    assert_error(
        cors_env["client"].post("/v1/chat/completions", content=chunks(), headers=headers), 413, "request_too_large"
    )
    small = json.dumps(CHAT).encode()
    assert_error(cors_env["client"].post("/v1/chat/completions", content=small, headers=headers), 503, "model_loading")


def test_a_management_body_over_64_kb_is_413(cors_env: dict[str, Any]) -> None:
    patch = json.dumps({"greeting": "x" * (64 * 1024)}).encode()
    response = cors_env["client"].patch(
        "/v1/tenants/acme", content=patch, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert_error(response, 413, "request_too_large")


def test_messages_that_cannot_fit_are_refused_before_tokenizing(embedded_model_dir: Path) -> None:
    tokenizer = load_tokenizer(embedded_model_dir)
    longest = longest_token_bytes(tokenizer)
    assert 8 <= longest <= 1024
    fits = ["Hello there, when do you open?"]
    refuse_what_cannot_fit(tokenizer, fits, 64)  # no error
    over = ["a" * (64 * longest + 1)]
    with pytest.raises(APIError) as info:
        refuse_what_cannot_fit(tokenizer, over, 64)
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
