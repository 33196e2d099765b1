"""Fixtures of the server tests (plain helpers live in :mod:`tests.server.helpers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import ADMIN, SITE, make_client


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
