"""Tenants, their API keys and their settings, in SQLite.

Contract:

- A tenant id follows :mod:`adapters.ids`; creating one returns its first secret key in plain
  text, the only time it exists outside the caller's hands.
- Two kinds of key: ``secret`` (``sk-swl-``, the tenant's full API) and ``publishable``
  (``pk-swl-``, for a website's widget: chat only, see :mod:`server.tenancy.auth`). Both are the prefix
  + 32 random bytes, URL-safe, stored only as a sha256 hex digest. The keys carry 256 bits of
  entropy, so a fast hash loses nothing against guessing and keeps :meth:`authenticate_key`
  cheap enough to run on every request; the digest found by the indexed lookup is still
  compared with :func:`hmac.compare_digest`.
- A key is listed and revoked by its id (``key_`` + the first 20 hex digits of its digest) and
  shown by its prefix (the first characters, 72 random bits); never by its secret part. A revoked
  key never authenticates again, from the next request on.
- Settings (:class:`~server.tenancy.tenant_settings.TenantSettings`) are one JSON row per tenant,
  validated before they are written; a tenant without a row has the defaults.
- Every call is one transaction on its own connection (:class:`~server.database.Database`, WAL
  mode), so threads and other processes may share the database file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.ids import validate_tenant_id
from adapters.manifest import utc_now_iso
from server.database import Database
from server.tenancy.tenant_settings import TenantSettings

KEY_PREFIXES = {"secret": "sk-swl-", "publishable": "pk-swl-"}
"""Key kind -> the prefix its keys start with (both prefixes have the same length)."""
KEY_PREFIX = KEY_PREFIXES["secret"]
KEY_KINDS = tuple(KEY_PREFIXES)
_SHOWN_PREFIX_LEN = len(KEY_PREFIX) + 12
_KEY_ID_HEX = 20
_KEY_ID_RE = re.compile(rf"^key_[0-9a-f]{{{_KEY_ID_HEX}}}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    key_prefix TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE IF NOT EXISTS tenant_settings (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    settings TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
_KEY_INFO_SQL = (
    f"SELECT 'key_' || substr(key_hash, 1, {_KEY_ID_HEX}), key_prefix, tenant_id, kind, created_at, revoked_at "
    "FROM api_keys"
)


class TenantExists(ValueError):
    """A tenant with that id already exists."""


class TenantNotFound(KeyError):
    """No tenant with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Tenant not found."


@dataclass(frozen=True)
class Tenant:
    id: str
    created_at: str
    """ISO-8601 UTC."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key itself."""

    id: str
    key_prefix: str
    tenant_id: str
    kind: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class KeyOwner:
    """Who a valid key belongs to, and what kind of key it is."""

    tenant: Tenant
    kind: str
    digest: str = ""
    """The key's SHA-256 (what the database holds): names the key to per-key limits."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class TenantRegistry:
    """Tenants and API keys in one SQLite file."""

    def __init__(self, db_path: Path) -> None:
        self._db = Database(db_path, _SCHEMA)
        self.db_path = self._db.path

    def create_tenant(self, tenant_id: str) -> tuple[Tenant, str]:
        """Create a tenant and its first secret key; return both (the key in plain text)."""
        tenant = Tenant(validate_tenant_id(tenant_id), utc_now_iso())
        with self._db.transaction() as db:
            try:
                db.execute("INSERT INTO tenants (id, created_at) VALUES (?, ?)", (tenant.id, tenant.created_at))
            except sqlite3.IntegrityError:
                raise TenantExists(f"Tenant {tenant.id!r} already exists.") from None
            key = self._insert_key(db, tenant.id, "secret")
        return tenant, key

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        with self._db.transaction() as db:
            row = db.execute("SELECT id, created_at FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
        return Tenant(*row) if row else None

    def list_tenants(self) -> list[Tenant]:
        with self._db.transaction() as db:
            rows = db.execute("SELECT id, created_at FROM tenants ORDER BY id").fetchall()
        return [Tenant(*row) for row in rows]

    def authenticate(self, key: str) -> Tenant | None:
        """The tenant owning an unrevoked ``key`` of any kind, else None."""
        owner = self.authenticate_key(key)
        return owner.tenant if owner else None

    def authenticate_key(self, key: str) -> KeyOwner | None:
        """The tenant and kind of an unrevoked ``key``, else None."""
        if not isinstance(key, str) or len(key) > 256 or not key.startswith(tuple(KEY_PREFIXES.values())):
            return None
        digest = hash_key(key)
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT k.key_hash, k.kind, t.id, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest) or not key.startswith(KEY_PREFIXES[row[1]]):
            return None
        return KeyOwner(Tenant(row[2], row[3]), row[1], digest)

    def create_key(self, tenant_id: str, kind: str = "secret") -> tuple[ApiKeyInfo, str]:
        """Add a key to an existing tenant; return its info and the plain-text key."""
        if kind not in KEY_KINDS:
            raise ValueError(f"Unknown key kind {kind!r}; expected one of {KEY_KINDS}.")
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise TenantNotFound(f"Tenant {tenant_id!r} not found.")
            key = self._insert_key(db, tenant_id, kind)
            row = db.execute(_KEY_INFO_SQL + " WHERE key_hash = ?", (hash_key(key),)).fetchone()
        return ApiKeyInfo(*row), key

    def list_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        with self._db.transaction() as db:
            rows = db.execute(
                _KEY_INFO_SQL + " WHERE tenant_id = ? ORDER BY created_at, key_prefix", (tenant_id,)
            ).fetchall()
        return [ApiKeyInfo(*row) for row in rows]

    def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke the tenant's key with that id; False if there is no such unrevoked key."""
        if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
            return False
        with self._db.transaction() as db:
            cursor = db.execute(
                f"UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND substr(key_hash, 1, {_KEY_ID_HEX}) = ? "
                "AND revoked_at IS NULL",
                (utc_now_iso(), tenant_id, key_id.removeprefix("key_")),
            )
        return cursor.rowcount > 0

    def get_settings(self, tenant_id: str) -> TenantSettings:
        """The tenant's settings (the defaults until it changes any)."""
        with self._db.transaction() as db:
            row = db.execute("SELECT settings FROM tenant_settings WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return TenantSettings.model_validate_json(row[0]) if row else TenantSettings()

    def update_settings(self, tenant_id: str, change: Callable[[TenantSettings], TenantSettings]) -> TenantSettings:
        """Apply ``change`` to the tenant's settings in one write transaction and store the result.

        Concurrent updates serialise (the transaction holds the write lock from its first read),
        so none is lost; if ``change`` raises, nothing is written.
        """
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise TenantNotFound(f"Tenant {tenant_id!r} not found.")
            row = db.execute("SELECT settings FROM tenant_settings WHERE tenant_id = ?", (tenant_id,)).fetchone()
            settings = change(TenantSettings.model_validate_json(row[0]) if row else TenantSettings())
            db.execute(
                "INSERT INTO tenant_settings (tenant_id, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(tenant_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                (tenant_id, settings.model_dump_json(), utc_now_iso()),
            )
        return settings

    @staticmethod
    def _insert_key(db: sqlite3.Connection, tenant_id: str, kind: str) -> str:
        key = KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO api_keys (key_hash, key_prefix, tenant_id, kind, created_at) VALUES (?, ?, ?, ?, ?)",
            (hash_key(key), key[:_SHOWN_PREFIX_LEN], tenant_id, kind, utc_now_iso()),
        )
        return key
