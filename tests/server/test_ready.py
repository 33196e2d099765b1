"""/ready answers strangers: when the base cannot load it says so without the exception's text."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings


def test_a_failed_load_is_reported_without_internals(tmp_path: Path) -> None:
    missing = tmp_path / "secret-location" / "no-model"
    with TestClient(create_app(Settings(data=tmp_path / "data", model=str(missing)))) as client:
        deadline = time.monotonic() + 60
        while (response := client.get("/ready")).json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
    assert response.status_code == 503 and response.json()["status"] == "failed"
    error = response.json()["error"]
    assert "could not be loaded" in error
    assert "secret-location" not in error and "Error" not in error
