"""Who is calling: ``Authorization: Bearer <key>`` turned into a :class:`Principal`.

Contract: :func:`authenticate` returns a principal or raises :class:`~server.errors.APIError`
401 (``missing_api_key`` when no bearer key was sent, ``invalid_api_key`` when it matches
nothing). The admin key comes from settings and is compared in constant time; with no admin
key configured (unset or empty) nobody is admin. Every other key is looked up in the tenant
registry. Route code then asks :func:`require_admin` or :func:`can_use_tenant`; resources of
another tenant are answered with 404, never 403, so their existence does not leak.

Publishable keys (``pk-swl-``, embedded in web pages, so public by design) may only chat: every
route calls :func:`authenticate` plainly and gets a 403 ``publishable_key_not_allowed`` for
them; only the chat and widget-config routes pass ``allow_publishable=True`` and then apply the
rest of the rule (allowed origin, the tenant's default model) themselves.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from server.errors import APIError
from server.tenancy.auth_throttle import AuthThrottle

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the admin (``tenant_id`` None) or one tenant."""

    tenant_id: str | None
    is_admin: bool
    key_kind: str = "secret"
    """``admin``, ``secret`` or ``publishable``."""
    key_digest: str = ""
    """The key's SHA-256 (empty for the admin): per-key and per-visitor limits count under it."""
    address: str = "unknown"
    """The client's address (``X-Forwarded-For`` where uvicorn trusts the proxy)."""

    @property
    def is_publishable(self) -> bool:
        return self.key_kind == "publishable"


def bearer_key(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer`` header, or None when there is none."""
    scheme, _, key = request.headers.get("authorization", "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return key


def authenticate(request: Request, allow_publishable: bool = False) -> Principal:
    """The caller of ``request``, or a 401; a publishable key gets 403 unless allowed here."""
    key = bearer_key(request)
    if key is None:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            headers=_CHALLENGE,
        )
    services = request.app.state.services
    throttle, address = _throttle(request), request.client.host if request.client else "unknown"
    throttle.check(address)
    admin_key = services.settings.admin_key
    if admin_key and hmac.compare_digest(key.encode("utf-8"), admin_key.encode("utf-8")):
        return Principal(tenant_id=None, is_admin=True, key_kind="admin", address=address)
    owner = services.tenants.authenticate_key(key)
    if owner is None:
        throttle.record(address)
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key", headers=_CHALLENGE)
    if owner.kind == "publishable" and not allow_publishable:
        raise APIError(
            403,
            "A publishable key may only be used for chat from the tenant's website; use a secret key.",
            code="publishable_key_not_allowed",
        )
    return Principal(
        tenant_id=owner.tenant.id, is_admin=False, key_kind=owner.kind, key_digest=owner.digest, address=address
    )


def _throttle(request: Request) -> AuthThrottle:
    """The app's failed-authentication throttle (made on first use)."""
    state = request.app.state
    throttle = getattr(state, "auth_throttle", None)
    if throttle is None:
        throttle = state.auth_throttle = AuthThrottle(state.services.settings.auth_failures_per_minute)
    return throttle


def require_admin(principal: Principal) -> None:
    """Raise 403 unless the caller is the admin."""
    if not principal.is_admin:
        raise APIError(403, "This endpoint needs the admin key.", code="admin_required")


def can_use_tenant(principal: Principal, tenant_id: str) -> bool:
    """Whether the caller may see and use ``tenant_id``'s resources."""
    return principal.is_admin or principal.tenant_id == tenant_id
