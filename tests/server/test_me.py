"""``GET /v1/me`` through Starlette with a real tenant registry: admin, tenant, bad keys."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.errors import install_error_handlers
from server.routes import me
from server.settings import Settings
from tests.server.helpers import ADMIN, ADMIN_KEY, assert_error, bearer, real_services


def test_me_names_the_keys_owner(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, admin_key=ADMIN_KEY)
    services = real_services(settings)
    tenants = services.tenants
    app = Starlette(routes=me.routes)
    install_error_handlers(app)
    app.state.services = services
    client = TestClient(app)
    _, key = tenants.create_tenant("acme")
    assert client.get("/v1/me", headers=bearer(key)).json() == {
        "object": "principal",
        "is_admin": False,
        "tenant": "acme",
    }
    assert client.get("/v1/me", headers=ADMIN).json() == {"object": "principal", "is_admin": True, "tenant": None}
    assert_error(client.get("/v1/me"), 401, "missing_api_key")
    assert_error(client.get("/v1/me", headers=bearer(key + "x")), 401, "invalid_api_key")
