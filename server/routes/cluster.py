"""``GET /v1/cluster/replicas`` (admin): the engine replicas of ``swaplora serve --cluster``.

Contract: the admin key only (403 otherwise). In a cluster, an OpenAI-style list of what this
server has seen of each replica (:class:`server.cluster.replica_board.ReplicaBoard`: id, pid,
requests, requests whose adapter it already held, adapter loads, rows running when the last
request arrived, the adapter ids that last landed there). Without a cluster: 404 ``cluster_not_enabled``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.cluster.cluster_admitter import ClusterAdmitter
from server.errors import not_found
from server.routes.paging import list_object
from server.services import services_of
from server.tenancy.auth import authenticate, require_admin


async def list_replicas(request: Request) -> JSONResponse:
    require_admin(authenticate(request))
    cluster = services_of(request).admitter
    if not isinstance(cluster, ClusterAdmitter):
        raise not_found("This server runs its engine in-process (start it with --cluster).", code="cluster_not_enabled")
    return JSONResponse(list_object(cluster.board.snapshot(), has_more=False))


routes = [Route("/v1/cluster/replicas", list_replicas, methods=["GET"])]
