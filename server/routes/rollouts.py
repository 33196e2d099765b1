"""Rollouts of adapter versions: ``PATCH /v1/adapters/{tenant}/{name}`` (traffic split, promotion)
and ``GET /v1/adapters/{tenant}/{name}/stats`` (the per-version scoreboard).

Contract:

- ``PATCH`` with ``{"traffic": {"3": 90, "4": 10}}`` splits the adapter's unpinned requests over
  existing versions by weight (integer percents summing to 100, at most 8 versions), sticky per
  conversation (the request's ``user``); ``{"traffic": {"4": 100}}`` promotes version 4 (it
  becomes current, the split ends); ``{"traffic": null}`` ends a split (``current`` answers).
  Rolling back (``POST .../rollback``) also ends a split, as does deleting a version the split
  names. Pinned ids (``tenant/name@4``) are never affected; a change applies from the next
  request. Answers with the adapter's detail (``traffic`` included). A missing version is 404;
  a malformed split a 400 naming ``traffic``.
- ``GET .../stats`` answers ``{"object": "list", "data": [...]}``, one entry per version
  (:mod:`server.rollouts.scoreboard`), and ``traffic``.
- Same scoping as the other adapter routes: a tenant sees and changes only its own adapters;
  another tenant's is the same 404 as a missing one.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.store import AdapterNotFound
from adapters.traffic_split import TrafficSplit
from server.errors import bad_request
from server.rollouts.scoreboard import scoreboard
from server.routes.adapters import adapter_detail, adapter_not_found, owned_adapter
from server.routes.tenants import read_json_object
from server.services import services_of
from server.tenancy.auth import authenticate


async def set_traffic(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    data = await read_json_object(request, frozenset({"traffic"}))
    if "traffic" not in data:
        raise bad_request("Field 'traffic' is required: versions and percents, or null.", param="traffic")
    try:
        split = None if data["traffic"] is None else TrafficSplit.parse(data["traffic"])
    except ValueError as exc:
        raise bad_request(f"Invalid traffic split: {exc}.", param="traffic") from None
    store = services_of(request).store

    def apply() -> dict[str, object]:
        store.set_traffic(tenant, name, split)
        return adapter_detail(store, tenant, name)

    try:
        return JSONResponse(await run_in_threadpool(apply))
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None


async def adapter_stats(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    services = services_of(request)

    def read() -> dict[str, object]:
        split = services.store.traffic(tenant, name)  # also: 404 for a missing adapter below
        services.store.current_version(tenant, name)
        board = scoreboard(services.served, services.feedback, services.comparisons, tenant, name)
        return {"object": "list", "data": board, "traffic": split.to_api() if split else None}

    try:
        return JSONResponse(await run_in_threadpool(read))
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None


routes = [
    Route("/v1/adapters/{tenant}/{name}", set_traffic, methods=["PATCH"]),
    Route("/v1/adapters/{tenant}/{name}/stats", adapter_stats, methods=["GET"]),
]
