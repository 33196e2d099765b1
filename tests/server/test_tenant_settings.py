"""Tenant settings and keys through the real routes: validation, who may change what, key kinds.

Every refused change is checked twice: the 4xx in OpenAI's shape, and that the stored settings
are exactly what they were before.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from server.tenancy.tenant_settings import TenantSettings, normalize_origin
from tests.adapters.helpers import save_peft_adapter
from tests.server.helpers import ADMIN, BASE, SITE, UNSET_NEWER_LIMITS, adapter_files, assert_error, bearer, make_client


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    client = make_client(tmp_path, base=BASE)
    keys = {t: client.post("/v1/tenants", json={"id": t}, headers=ADMIN).json()["api_key"] for t in ("acme", "globex")}
    return {"client": client, "data": tmp_path, "acme": bearer(keys["acme"]), "globex": bearer(keys["globex"])}


def settings_of(env: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
    """The tenant's record as GET shows it, without its usage (which PATCH does not measure)."""
    response = env["client"].get(f"/v1/tenants/{tenant}", headers=ADMIN)
    assert response.status_code == 200, response.text
    record = response.json()
    assert set(record.pop("usage")) == set(UNSET_NEWER_LIMITS) - {"batch_rows"}
    return record


def patch(env: dict[str, Any], body: Any, headers: dict[str, str] | None = None, tenant: str = "acme") -> Any:
    return env["client"].patch(f"/v1/tenants/{tenant}", json=body, headers=env["acme"] if headers is None else headers)


# ------------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("HTTPS://Shop.Example", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:80/", "http://127.0.0.1"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(given: str, stored: str) -> None:
    assert normalize_origin(given) == stored


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "null",
        "shop.example",
        "https://shop.example/path",
        "https://shop.example?x=1",
        "https://*.shop.example",
        "ftp://shop.example",
        "https://user:pw@shop.example",
        "https://shop.example:99999",
        "https://",
        "https://a b",
    ],
)
def test_inexact_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(origin)


def test_defaults_and_origin_check() -> None:
    settings = TenantSettings()
    assert settings.default_model == "base" and settings.allowed_origins == []
    assert settings.limits.requests_per_minute is None and not settings.allows_origin(SITE)
    allowed = TenantSettings(allowed_origins=[SITE])
    assert allowed.allows_origin(SITE) and allowed.allows_origin(SITE.upper())
    assert not allowed.allows_origin(SITE + ":8443") and not allowed.allows_origin(None)


# ------------------------------------------------------------------------------- PATCH


def test_tenant_changes_its_settings(env: dict[str, Any]) -> None:
    body = {
        "display_name": "Acme Bikes",
        "brand_color": "#FF6600",
        "logo_url": "https://cdn.acme.example/logo.png",
        "greeting": "Hi! Ask me about bikes.",
        "system_prompt": "You are Acme's bike shop assistant.",
        "allowed_origins": [SITE, "http://localhost:8080"],
        "limits": {"requests_per_minute": 30},
    }
    response = patch(env, body)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["brand_color"] == "#ff6600" and record["allowed_origins"] == [SITE, "http://localhost:8080"]
    assert record["limits"] == {
        "requests_per_minute": 30,
        "tokens_per_day": None,
        "concurrent_requests": None,
        "concurrent_jobs": None,
        **UNSET_NEWER_LIMITS,
    }
    assert settings_of(env) == record
    # limits merge field by field; null resets a field to its default
    record = patch(env, {"limits": {"tokens_per_day": 1000}, "greeting": None}).json()
    assert record["limits"]["requests_per_minute"] == 30 and record["limits"]["tokens_per_day"] == 1000
    assert record["greeting"] is None and record["display_name"] == "Acme Bikes"
    # the admin may change any tenant; the other tenant keeps its defaults
    assert patch(env, {"display_name": "Globex"}, headers=ADMIN, tenant="globex").status_code == 200
    assert settings_of(env, "globex")["display_name"] == "Globex" and settings_of(env)["display_name"] == "Acme Bikes"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"brand_color": "orange"}, "brand_color"),
        ({"brand_color": "#12345"}, "brand_color"),
        ({"logo_url": "javascript:alert(1)"}, "logo_url"),
        ({"logo_url": "//cdn.example/x.png"}, "logo_url"),
        ({"allowed_origins": ["*"]}, "allowed_origins"),
        ({"allowed_origins": "https://shop.example"}, "allowed_origins"),
        ({"allowed_origins": [f"https://s{i}.example" for i in range(51)]}, "allowed_origins"),
        ({"system_prompt": "x" * 4001}, "system_prompt"),
        ({"greeting": 5}, "greeting"),
        ({"default_model": "Acme/Support"}, "default_model"),
        ({"default_model": "globex/private"}, "default_model"),
        ({"default_model": "acme/missing"}, "default_model"),
        ({"limits": {"requests_per_minute": 0}}, "limits.requests_per_minute"),
        ({"limits": {"requests_per_minute": "10"}}, "limits.requests_per_minute"),
        ({"limits": {"tokens_per_day": True}}, "limits.tokens_per_day"),
        ({"limits": {"burst": 5}}, "limits.burst"),
        ({"limits": 5}, "limits"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_bad_settings_change_nothing(env: dict[str, Any], body: dict[str, Any], param: str) -> None:
    patch(env, {"display_name": "Before", "allowed_origins": [SITE]})
    before = settings_of(env)
    error = assert_error(patch(env, {"display_name": "After", **body}), 400)
    assert error["param"] == param, error
    assert settings_of(env) == before


@pytest.mark.parametrize("body", [b"{oops", b"[]", b"null"])
def test_bad_bodies(env: dict[str, Any], body: bytes) -> None:
    assert_error(env["client"].patch("/v1/tenants/acme", content=body, headers=env["acme"]), 400)


def test_default_model_must_be_an_own_existing_adapter(env: dict[str, Any], tmp_path: Path) -> None:
    adapter = save_peft_adapter(tmp_path / "lora")
    published = env["client"].post(
        "/v1/adapters", headers=env["acme"], data={"name": "support"}, files=adapter_files(adapter)
    )
    assert published.status_code == 201, published.text
    for model in ("acme/support", "acme/support@1", "base"):
        assert patch(env, {"default_model": model}).json()["default_model"] == model
    assert_error(patch(env, {"default_model": "acme/support@2"}), 400, "model_not_found")


def test_other_tenants_and_publishable_keys_cannot_change_settings(env: dict[str, Any]) -> None:
    before = settings_of(env)
    # another tenant's id is not found, like a missing one
    assert_error(patch(env, {"display_name": "Pwned"}, headers=env["globex"]), 404)
    assert_error(patch(env, {"display_name": "Pwned"}, headers=env["globex"], tenant="nobody"), 404)
    assert_error(env["client"].get("/v1/tenants/acme", headers=env["globex"]), 404)
    publishable = env["client"].post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=env["acme"])
    pk = bearer(publishable.json()["api_key"])
    assert_error(patch(env, {"display_name": "Pwned"}, headers=pk), 403, "publishable_key_not_allowed")
    assert_error(env["client"].get("/v1/tenants/acme", headers=pk), 403, "publishable_key_not_allowed")
    assert settings_of(env) == before


# ------------------------------------------------------------------------------- keys


def test_key_kinds_listing_and_revocation(env: dict[str, Any]) -> None:
    client = env["client"]
    created = client.post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=env["acme"])
    assert created.status_code == 201, created.text
    body = created.json()
    pk = body["api_key"]
    assert pk.startswith("pk-swl-") and pk.startswith(body["prefix"]) and body["kind"] == "publishable"
    secret = client.post("/v1/tenants/acme/keys", json={"kind": "secret"}, headers=ADMIN).json()
    assert secret["api_key"].startswith("sk-swl-")

    listing = client.get("/v1/tenants/acme/keys", headers=env["acme"]).json()["data"]
    assert sorted(k["kind"] for k in listing) == ["publishable", "secret", "secret"]
    assert all("api_key" not in k and len(k["prefix"]) < 20 for k in listing)
    assert pk not in str(listing) and secret["api_key"] not in str(listing)

    # the new secret key works at once; revoked, it fails on the very next request
    assert client.get("/v1/tenants/acme", headers=bearer(secret["api_key"])).status_code == 200
    revoked = client.delete(f"/v1/tenants/acme/keys/{secret['id']}", headers=env["acme"])
    assert revoked.status_code == 200 and revoked.json()["deleted"] is True
    assert_error(client.get("/v1/tenants/acme", headers=bearer(secret["api_key"])), 401, "invalid_api_key")
    assert_error(client.delete(f"/v1/tenants/acme/keys/{secret['id']}", headers=env["acme"]), 404, "key_not_found")
    assert [
        k["revoked_at"] is not None for k in client.get("/v1/tenants/acme/keys", headers=ADMIN).json()["data"]
    ].count(True) == 1


def test_keys_of_other_tenants_are_out_of_reach(env: dict[str, Any]) -> None:
    client = env["client"]
    acme_key = client.post("/v1/tenants/acme/keys", json={"kind": "secret"}, headers=env["acme"]).json()
    assert_error(client.post("/v1/tenants/acme/keys", json={"kind": "secret"}, headers=env["globex"]), 404)
    assert_error(client.get("/v1/tenants/acme/keys", headers=env["globex"]), 404)
    assert_error(client.delete(f"/v1/tenants/acme/keys/{acme_key['id']}", headers=env["globex"]), 404)
    # globex naming acme's key under its own tenant finds nothing either
    assert_error(client.delete(f"/v1/tenants/globex/keys/{acme_key['id']}", headers=env["globex"]), 404)
    assert client.get("/v1/tenants/acme", headers=bearer(acme_key["api_key"])).status_code == 200
    pk = client.post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=env["acme"]).json()["api_key"]
    assert_error(client.post("/v1/tenants/acme/keys", json={"kind": "secret"}, headers=bearer(pk)), 403)
    assert_error(client.get("/v1/adapters", headers=bearer(pk)), 403, "publishable_key_not_allowed")


@pytest.mark.parametrize("body", [{}, {"kind": "admin"}, {"kind": None}, {"kind": "secret", "scope": "all"}])
def test_bad_key_requests(env: dict[str, Any], body: dict[str, Any]) -> None:
    assert_error(env["client"].post("/v1/tenants/acme/keys", json=body, headers=env["acme"]), 400)
    assert len(env["client"].get("/v1/tenants/acme/keys", headers=ADMIN).json()["data"]) == 1


def test_no_key_is_in_the_database_in_clear(env: dict[str, Any]) -> None:
    client = env["client"]
    keys = [
        client.post("/v1/tenants/acme/keys", json={"kind": kind}, headers=env["acme"]).json()["api_key"]
        for kind in ("secret", "publishable")
    ]
    keys.append(env["acme"]["Authorization"].removeprefix("Bearer "))
    with sqlite3.connect(env["data"] / "swaplora.db") as db:
        db.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in env["data"].glob("swaplora.db*"))
    for key in keys:
        assert key[7:].encode() not in raw and key[19:].encode() not in raw
