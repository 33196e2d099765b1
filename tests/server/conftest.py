"""Fixtures of the server tests (plain helpers live in :mod:`tests.server.helpers`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.errors import install_error_handlers
from server.jobs.runner import JobRunner
from server.routes import files as file_routes
from server.routes import fine_tuning
from server.settings import Settings
from tests.adapters.helpers import publish
from tests.server.helpers import ADMIN, ADMIN_KEY, HANDBOOK, SITE, bearer, make_client, real_services
from tests.server.stand_in_worker import STAND_IN


@pytest.fixture
def cors_env(tmp_path: Path) -> dict[str, Any]:
    """Tenants ``acme`` (allowing :data:`SITE`) and ``globex`` (allowing ``https://globex.example``),
    both branded and with a system prompt, on a :func:`make_client` app; acme has a publishable key.
    ``client``, ``pk`` (acme's publishable key) and ``secret`` (each tenant's secret key)."""
    client = make_client(tmp_path)
    secret = {}
    for tenant, origin in (("acme", SITE), ("globex", "https://globex.example")):
        secret[tenant] = client.post("/v1/tenants", json={"id": tenant}, headers=ADMIN).json()["api_key"]
        client.patch(
            f"/v1/tenants/{tenant}",
            json={
                "allowed_origins": [origin],
                "brand_color": "#ff6600",
                "display_name": tenant.title(),
                "system_prompt": "secret",
            },
            headers=ADMIN,
        )
    pk = client.post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=ADMIN).json()["api_key"]
    return {"client": client, "pk": pk, "secret": secret}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """``/v1/files`` and ``/v1/fine_tuning/jobs`` with the real checker and a runner driving the
    stand-in worker of :mod:`tests.server.stand_in_worker` (its mode is the job's suffix); acme owns
    acme/support@1. Shared by the route tests, so they compare counts, not totals."""
    tmp_path = tmp_path_factory.mktemp("jobs-api")
    script = tmp_path / "stand_in_worker.py"
    script.write_text(STAND_IN)
    settings = Settings(data=tmp_path / "data", admin_key=ADMIN_KEY, job_grace_seconds=1.0)
    services = real_services(settings, model_dir=tmp_path)
    publish(services.store, "acme", "support")
    publish(services.store, "globex", "private")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.runner = JobRunner(
            services.jobs,
            services.files,
            services.store,
            services.tenants,
            settings,
            serving=services,
            command=[sys.executable, str(script)],
        )
        await services.runner.start()
        yield
        await services.runner.stop()

    app = Starlette(routes=[*file_routes.routes, *fine_tuning.routes], lifespan=lifespan)
    install_error_handlers(app)
    app.state.services = services
    keys = {t: bearer(services.tenants.create_tenant(t)[1]) for t in ("acme", "globex")}
    with TestClient(app) as client:
        env = SimpleNamespace(client=client, services=services, **keys)
        env.file = {
            t: client.post(
                "/v1/files",
                headers=keys[t],
                data={"purpose": "fine-tune"},
                files={"file": ("Handbook v2.md", HANDBOOK)},
            ).json()["id"]
            for t in keys
        }
        yield env
