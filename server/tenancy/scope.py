"""Which tenant a training request acts for: the caller's own, or the one the admin names.

Contract: :func:`acting_tenant` returns the tenant a write (an upload, a new job) belongs to. A
tenant key acts for its own tenant; naming another tenant answers the same 404 a missing tenant
gets. The admin key acts for a tenant only by naming it (400 without one, 404 for an unknown one).
:func:`read_scope` is the tenant filter for reads: the caller's tenant, or for the admin the named
tenant or None (every tenant), as in the adapter routes.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from adapters.ids import InvalidId, validate_tenant_id
from server.errors import bad_request, not_found
from server.tenancy.auth import Principal


def _unknown_tenant(tenant: object) -> Exception:
    return not_found(f"Tenant {tenant!r} not found.", param="tenant")


async def acting_tenant(request: Request, principal: Principal, named: object) -> str:
    """The tenant a write acts for; ``named`` is the request's ``tenant`` field (None when absent)."""
    if named is not None and not isinstance(named, str):
        raise bad_request("Field 'tenant' must be a string.", param="tenant")
    if not principal.is_admin:
        if named and named != principal.tenant_id:
            raise _unknown_tenant(named)
        assert principal.tenant_id is not None
        return principal.tenant_id
    if not named:
        raise bad_request("The admin must name the tenant to act for in field 'tenant'.", param="tenant")
    try:
        validate_tenant_id(named)
    except InvalidId:
        raise _unknown_tenant(named) from None
    if await run_in_threadpool(request.app.state.services.tenants.get_tenant, named) is None:
        raise _unknown_tenant(named)
    return named


def read_scope(request: Request, principal: Principal) -> str | None:
    """The tenant whose resources a read may see; None: all (admin without ``?tenant=``)."""
    if principal.is_admin:
        return request.query_params.get("tenant") or None
    return principal.tenant_id
