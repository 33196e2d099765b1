"""Bad input against a real server: every refusal is a 4xx in OpenAI's error shape, the server keeps
answering, and a refused upload leaves nothing behind in the adapter store or the upload temp dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_lora
from tests.integration.conftest import (
    MAX_RANK,
    WEIGHTS,
    Server,
    assert_healthy,
    assert_openai_error,
    auth,
    adapter_files,
    pickled_weights,
    store_snapshot,
    upload,
)

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Hi"}]


def chat_body(**fields: Any) -> bytes:
    """A valid chat request with ``fields`` changed; a field set to ``...`` is left out."""
    body = {"model": "base", "messages": MESSAGES, "max_tokens": 4, **fields}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


# (id, raw body, expected status, expected code, expected param); None: not checked
CHAT_CASES = [
    ("malformed-json", b'{"model": "base", "messages": [', 400, None, None),
    ("empty-body", b"", 400, None, None),
    ("missing-messages", chat_body(messages=...), 400, None, "messages"),
    ("messages-not-a-list", chat_body(messages="Hi"), 400, None, "messages"),
    ("unknown-role", chat_body(messages=[{"role": "tool", "content": "Hi"}]), 400, None, None),
    ("negative-temperature", chat_body(temperature=-1), 400, None, "temperature"),
    ("zero-top-p", chat_body(top_p=0), 400, None, "top_p"),
    ("huge-max-tokens", chat_body(max_tokens=10**6), 400, "context_length_exceeded", "max_tokens"),
    ("n-2", chat_body(n=2), 400, None, "n"),
    ("tools", chat_body(tools=[{"type": "function", "function": {"name": "f"}}]), 400, None, "tools"),
]


@pytest.mark.parametrize(("body", "status", "code", "param"), [c[1:] for c in CHAT_CASES],
                         ids=[c[0] for c in CHAT_CASES])
def test_bad_chat_request_is_refused(http: httpx.Client, tenant_keys: dict[str, str], body: bytes, status: int,
                                     code: str | None, param: str | None) -> None:
    headers = {**auth(tenant_keys["acme"]), "Content-Type": "application/json"}
    response = http.post("/v1/chat/completions", content=body, headers=headers)
    assert_openai_error(response, status, code=code, param=param)
    assert_healthy(http)


@pytest.mark.parametrize("model", ["../etc", "acme/../x", "acme/support@0", "ACME/x"])
def test_bad_model_id_is_refused(http: httpx.Client, tenant_keys: dict[str, str], support_v1, model: str) -> None:
    response = http.post("/v1/chat/completions", content=chat_body(model=model), headers=auth(tenant_keys["acme"]))
    assert_openai_error(response, (400, 404), param="model")
    assert_healthy(http)


# --------------------------------------------------------------------------------- uploads


@pytest.fixture(scope="module")
def lora_other_arch(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid PEFT LoRA, but for a 2-layer Llama of hidden size 64, not the served base."""
    return make_lora(tiny_model_dir, tmp_path_factory.mktemp("lora-tiny"), rank=8, seed=3)


@pytest.fixture(scope="module")
def lora_rank32(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA for the served base whose rank (32) is above the server's SWAPLORA_MAX_RANK (16)."""
    assert 32 > MAX_RANK
    return make_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-r32"), rank=32, seed=4,
                     modules=["q_proj", "v_proj"])


UPLOAD_CASES = {
    # id: (name, files built from the fixtures, expected code, expected param)
    "pickle-weights": ("bad", lambda f: adapter_files(f["good"], weights=("adapter_model.bin", pickled_weights(f["good"]))),
                       "only_safetensors", "files"),
    "garbage-safetensors": ("bad", lambda f: adapter_files(f["good"], weights=(WEIGHTS, b"\x00garbage" * 64)),
                            "invalid_adapter", WEIGHTS),
    "other-architecture": ("bad", lambda f: adapter_files(f["other"]), "invalid_adapter", None),
    "rank-above-max": ("bad", lambda f: adapter_files(f["rank32"]), "invalid_adapter", "r"),
    "name-with-dots": ("../x", lambda f: adapter_files(f["good"]), None, "name"),
    "missing-name": (None, lambda f: adapter_files(f["good"]), None, "name"),
}


@pytest.mark.parametrize("case", list(UPLOAD_CASES))
def test_bad_upload_is_refused_and_leaves_the_store_untouched(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str], support_v1,
    lora_v1: Path, lora_other_arch: Path, lora_rank32: Path, case: str,
) -> None:
    name, make_files, code, param = UPLOAD_CASES[case]
    files = make_files({"good": lora_v1, "other": lora_other_arch, "rank32": lora_rank32})
    before = store_snapshot(server)
    assert any(p.startswith("adapters/acme/support/") for p in before), before
    response = upload(http, tenant_keys["acme"], files, name)
    assert_openai_error(response, 400, code=code, param=param)
    assert store_snapshot(server) == before
    assert_healthy(http)
    listed = http.get("/v1/adapters", headers=auth(tenant_keys["acme"])).json()["data"]
    assert "acme/bad" not in {a["id"] for a in listed}, listed


def test_good_files_upload_under_the_bad_tests_name(
    http: httpx.Client, tenant_keys: dict[str, str], server: Server, lora_v1: Path
) -> None:
    """The control for the refusals above: the same files, correctly named, are accepted."""
    response = upload(http, tenant_keys["globex"], adapter_files(lora_v1), "bad")
    assert response.status_code == 201, response.text
    assert any(p.startswith("adapters/globex/bad/") for p in store_snapshot(server))
    deleted = http.delete("/v1/adapters/globex/bad", headers=auth(tenant_keys["globex"]))
    assert deleted.status_code == 200, deleted.text
