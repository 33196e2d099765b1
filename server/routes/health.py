"""Operational endpoints: ``/health`` (the process is up), ``/ready`` (the model is loaded and
serving), ``/metrics`` (Prometheus text format). None needs a key; none reveals tenant data.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.services import services_of


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    services = services_of(request)
    if services.load_error:
        return JSONResponse({"status": "failed", "error": services.load_error}, status_code=503)
    if services.admitter is None:
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "5"})
    base = services.base
    assert base is not None  # set before the admitter
    spec = base.spec
    return JSONResponse(
        {
            "status": "ready",
            "model": spec.name,
            "base_spec_hash": spec.hash,
            "device": str(base.device),
            "context_length": base.context_length,
            "execution_plan": {key: value for key, value in base.plan.to_dict().items() if key != "measured_ms"},
        }
    )


async def metrics(request: Request) -> Response:
    services = services_of(request)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
