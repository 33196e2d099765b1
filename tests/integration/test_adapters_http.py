"""Tenants, keys, adapter upload/versions/rollback and tenant isolation against a real server.

An adapter of another tenant must be indistinguishable from one that does not exist: same status,
same error body (up to the id the caller typed), through chat, the models API and the adapter
routes alike.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import (
    Server,
    assert_openai_error,
    auth,
    greedy,
    upload_ok,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------- tenants and keys


def test_admin_creates_tenants_and_each_gets_a_key(server: Server, http: httpx.Client, tenant_keys) -> None:
    response = http.post("/v1/tenants", json={"id": "initech"}, headers=auth(server.admin_key))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] == "initech" and body["api_key"] not in tenant_keys.values()
    assert server.openai(body["api_key"]).models.list().data[0].id == "base"
    again = http.post("/v1/tenants", json={"id": "initech"}, headers=auth(server.admin_key))
    assert_openai_error(again, 409)
    listed = http.get("/v1/tenants", headers=auth(server.admin_key)).json()["data"]
    assert {"acme", "globex", "initech"} <= {t["id"] for t in listed}
    assert all("api_key" not in t for t in listed)


def test_missing_key_is_401(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/models"), 401, code="missing_api_key")
    chat = http.post("/v1/chat/completions", json={"model": "base", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(chat, 401, code="missing_api_key")


def test_wrong_key_is_401(server: Server, http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/models", headers=auth("sk-not-a-key")), 401, code="invalid_api_key")
    client = server.openai("sk-not-a-key")
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        greedy(client, "base", max_tokens=1)


def test_tenant_key_cannot_create_tenants(http: httpx.Client, tenant_keys: dict[str, str]) -> None:
    response = http.post("/v1/tenants", json={"id": "evil"}, headers=auth(tenant_keys["acme"]))
    assert_openai_error(response, 403)
    assert http.get("/v1/tenants/evil", headers=auth(tenant_keys["acme"])).status_code == 404


# --------------------------------------------------------------------------------- models listing


def test_models_list_shows_base_and_own_adapters_only(
    acme: openai.OpenAI, globex: openai.OpenAI, support_v1, globex_private
) -> None:
    acme_ids = {m.id for m in acme.models.list().data}
    globex_ids = {m.id for m in globex.models.list().data}
    assert {"base", "acme/support"} <= acme_ids
    assert {"base", "globex/private"} <= globex_ids
    assert not any(i.startswith("globex/") for i in acme_ids), acme_ids
    assert not any(i.startswith("acme/") for i in globex_ids), globex_ids


# --------------------------------------------------------------------------------- versions


def _answer(client: openai.OpenAI, model: str) -> tuple[str, str]:
    completion = greedy(client, model)
    return completion.model, completion.choices[0].message.content


def test_uploaded_adapter_changes_the_answer(acme: openai.OpenAI, support_v1, base_answer) -> None:
    assert support_v1["id"] == "acme/support" and support_v1["version"] == 1
    assert support_v1["rank"] == 8
    model, text = _answer(acme, "acme/support")
    assert model == "acme/support@1"
    assert text != base_answer.choices[0].message.content


def test_new_version_is_current_old_one_stays_pinned_and_rollback_restores_it(
    server: Server, http: httpx.Client, acme: openai.OpenAI, tenant_keys: dict[str, str], support_v1, lora_v2
) -> None:
    key = tenant_keys["acme"]
    _, text_v1 = _answer(acme, "acme/support@1")
    v2 = upload_ok(http, key, lora_v2, "support")
    try:
        assert v2["id"] == "acme/support" and v2["version"] == 2 and v2["current_version"] == 2
        model, text_v2 = _answer(acme, "acme/support")
        assert model == "acme/support@2"
        assert text_v2 != text_v1, "version 2 has other weights; it should answer differently"
        assert _answer(acme, "acme/support@1") == ("acme/support@1", text_v1)

        detail = http.get("/v1/adapters/acme/support", headers=auth(key)).json()
        assert detail["current_version"] == 2
        assert [v["version"] for v in detail["versions"]] == [1, 2]
        assert {v["base_spec_hash"] for v in detail["versions"]} == {server.ready["base_spec_hash"]}
    finally:
        rollback = http.post("/v1/adapters/acme/support/rollback", json={"version": 1}, headers=auth(key))
    assert rollback.status_code == 200, rollback.text
    assert rollback.json()["version"] == 1
    assert _answer(acme, "acme/support") == ("acme/support@1", text_v1)
    assert acme.models.retrieve("acme/support").version == 1


# --------------------------------------------------------------------------------- isolation


def _not_found_body(client: openai.OpenAI, model: str) -> dict[str, Any]:
    with pytest.raises(openai.NotFoundError) as info:
        greedy(client, model, max_tokens=1)
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    return info.value.response.json()


def _without(body: dict[str, Any], name: str) -> str:
    return str(body).replace(name, "<id>")


def test_other_tenants_adapter_is_not_found_like_a_missing_one(globex: openai.OpenAI, support_v1) -> None:
    missing = _not_found_body(globex, "acme/nonexistent")
    for model in ("acme/support", "acme/support@1"):
        assert _without(_not_found_body(globex, model), model) == _without(missing, "acme/nonexistent")
    with pytest.raises(openai.NotFoundError):
        globex.models.retrieve("acme/support")


def test_other_tenant_cannot_read_rollback_or_delete(
    http: httpx.Client, tenant_keys: dict[str, str], support_v1
) -> None:
    globex = auth(tenant_keys["globex"])
    listing = http.get("/v1/adapters", headers=globex).json()["data"]
    assert all(a["tenant"] == "globex" for a in listing), listing
    for name in ("support", "nonexistent"):
        requests = [
            ("GET", f"/v1/adapters/acme/{name}", None),
            ("POST", f"/v1/adapters/acme/{name}/rollback", {"version": 1}),
            ("DELETE", f"/v1/adapters/acme/{name}/versions/1", None),
            ("DELETE", f"/v1/adapters/acme/{name}", None),
        ]
        bodies = []
        for method, path, body in requests:
            response = http.request(method, path, json=body, headers=globex)
            assert_openai_error(response, 404)
            bodies.append(_without(response.json(), f"acme/{name}"))
        if name == "support":
            foreign = bodies
        else:
            assert bodies == foreign
    owner = http.get("/v1/adapters/acme/support", headers=auth(tenant_keys["acme"]))
    assert owner.status_code == 200 and owner.json()["current_version"] == 1
