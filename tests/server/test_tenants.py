"""TenantRegistry on a real SQLite file, bearer auth, and the tenant routes through Starlette
(:func:`tests.server.helpers.make_client`: the management routes and the real error handlers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adapters.ids import InvalidId
from server.settings import Settings
from server.tenancy.tenants import TenantExists, TenantNotFound, TenantRegistry

# tests/server/test_jobs.py and test_job_limits.py still import these four from this module.
from tests.server.helpers import ADMIN, ADMIN_KEY, assert_error, bearer, make_client

# ------------------------------------------------------------------------------- registry


def test_create_and_authenticate(tmp_path: Path) -> None:
    registry = TenantRegistry(tmp_path / "db.sqlite")
    tenant, key = registry.create_tenant("acme")
    assert tenant.id == "acme" and tenant.created_at.endswith("Z")
    assert key.startswith("sk-swl-") and len(key) > 40
    assert registry.authenticate(key) == tenant
    assert registry.get_tenant("acme") == tenant and registry.get_tenant("nobody") is None
    assert registry.authenticate(key + "x") is None
    assert registry.authenticate(key[:-1]) is None
    assert registry.authenticate("not-a-key") is None
    assert registry.authenticate("") is None
    # A second registry on the same file (another process, a restart) sees the same data.
    assert TenantRegistry(tmp_path / "db.sqlite").authenticate(key) == tenant


def test_keys_are_stored_only_hashed(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    registry = TenantRegistry(db)
    _, key = registry.create_tenant("acme")
    secret_part = key.removeprefix("sk-swl-")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the db and its WAL files
    assert secret_part.encode() not in raw
    assert secret_part[12:].encode() not in raw  # not even the part after the shown prefix
    assert hashlib.sha256(key.encode()).hexdigest().encode() in raw


def test_duplicate_and_invalid_tenants(tmp_path: Path) -> None:
    registry = TenantRegistry(tmp_path / "db.sqlite")
    registry.create_tenant("acme")
    with pytest.raises(TenantExists):
        registry.create_tenant("acme")
    with pytest.raises(InvalidId):
        registry.create_tenant("../acme")
    assert [t.id for t in registry.list_tenants()] == ["acme"]


def test_more_keys_and_revocation(tmp_path: Path) -> None:
    registry = TenantRegistry(tmp_path / "db.sqlite")
    _, first = registry.create_tenant("acme")
    registry.create_tenant("globex")
    info, second = registry.create_key("acme")
    assert info.tenant_id == "acme" and info.kind == "secret" and second.startswith(info.key_prefix)
    assert registry.authenticate(second).id == "acme"
    assert len(registry.list_keys("acme")) == 2
    assert info.id.startswith("key_") and info.id[4:] == hashlib.sha256(second.encode()).hexdigest()[:20]
    assert registry.revoke_key("globex", info.id) is False  # not globex's key
    assert registry.revoke_key("acme", info.key_prefix) is False  # a prefix is not an id
    assert registry.revoke_key("acme", info.id) is True
    assert registry.authenticate(second) is None
    assert registry.authenticate(first).id == "acme"
    assert registry.revoke_key("acme", info.id) is False  # already revoked
    assert [k.revoked_at is not None for k in registry.list_keys("acme")].count(True) == 1
    with pytest.raises(TenantNotFound):
        registry.create_key("nobody")
    with pytest.raises(ValueError):
        registry.create_key("acme", kind="root")


# ------------------------------------------------------------------------------- routes and auth


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


def test_create_tenant_shows_key_once(client: TestClient) -> None:
    response = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] == "acme" and body["object"] == "tenant" and body["created_at"]
    key = body["api_key"]
    record = client.get("/v1/tenants/acme", headers=bearer(key)).json()
    assert {k: record[k] for k in ("id", "object", "created_at")} == {
        "id": "acme",
        "object": "tenant",
        "created_at": body["created_at"],
    }
    assert "api_key" not in record
    listing = client.get("/v1/tenants", headers=ADMIN).json()
    assert listing["object"] == "list" and [t["id"] for t in listing["data"]] == ["acme"]
    assert "api_key" not in listing["data"][0]
    assert_error(client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN), 409, "tenant_exists")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"acme"',
        b"{}",
        b'{"id": 5}',
        b'{"id": null}',
        b'{"id": "../etc"}',
        b'{"id": "Acme"}',
        b'{"id": "acme", "admin": true}',
        b'{"id": ""}',
    ],
)
def test_create_tenant_bad_bodies(client: TestClient, body: bytes) -> None:
    assert_error(client.post("/v1/tenants", content=body, headers=ADMIN), 400)
    assert client.get("/v1/tenants", headers=ADMIN).json()["data"] == []


def test_authentication_errors(client: TestClient) -> None:
    assert_error(client.get("/v1/tenants"), 401, "missing_api_key")
    assert_error(client.get("/v1/tenants", headers={"Authorization": "Basic abc"}), 401, "missing_api_key")
    assert_error(client.get("/v1/tenants", headers={"Authorization": "Bearer "}), 401, "missing_api_key")
    response = client.get("/v1/tenants", headers=bearer("sk-swl-wrong"))
    assert_error(response, 401, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/tenants", headers={"Authorization": f"bearer {ADMIN_KEY}"}).status_code == 200


def test_tenant_keys_are_not_admin(client: TestClient) -> None:
    key = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN).json()["api_key"]
    other = client.post("/v1/tenants", json={"id": "globex"}, headers=ADMIN).json()["api_key"]
    assert_error(client.post("/v1/tenants", json={"id": "evil"}, headers=bearer(key)), 403, "admin_required")
    assert_error(client.get("/v1/tenants", headers=bearer(key)), 403)
    # Another tenant's record looks exactly like a missing one.
    assert_error(client.get("/v1/tenants/acme", headers=bearer(other)), 404)
    assert_error(client.get("/v1/tenants/nobody", headers=bearer(other)), 404)
    assert_error(client.get("/v1/tenants/nobody", headers=ADMIN), 404)
    assert client.get("/v1/tenants/acme", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("admin_key", [None, ""])
def test_no_admin_without_admin_key(tmp_path: Path, admin_key: str | None) -> None:
    client = make_client(tmp_path, admin_key=admin_key)
    assert_error(client.get("/v1/tenants", headers=ADMIN), 401, "invalid_api_key")
    assert_error(client.get("/v1/tenants", headers=bearer("")), 401, "missing_api_key")


def test_a_short_admin_key_is_refused_at_start_up(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="admin_key"):
        Settings(data=tmp_path, admin_key="admin")
    assert Settings(data=tmp_path, admin_key="x" * 24).admin_key == "x" * 24
