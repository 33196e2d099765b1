"""The UI tests drive the Gradio UI that ``swaplora serve`` mounts at ``/ui`` on a live server.

The server, tenants and adapters are the integration suite's fixtures (a real ``python -m
swaplora.cli serve`` subprocess with the embedded model; re-exported here, so this directory
gets a server of its own). :func:`ui` is a ``gradio_client`` session signed in as tenant acme,
talking to the UI exactly as the browser page does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gradio_client import Client

from tests.integration.conftest import (  # noqa: F401 (fixtures)
    Server,
    http,
    lora_v1,
    lora_v2,
    server,
    support_v1,
    tenant_keys,
)


def ui_client(server: Server, key: str) -> Client:
    """A fresh UI session (its own gr.State) signed in with ``key`` (sent as a bearer key, as a
    script would; the browser's cookie sign-in is in the browser and gate tests)."""
    client = Client(
        f"{server.url}/ui/",
        verbose=False,
        download_files=False,
        analytics_enabled=False,
        headers={"Authorization": f"Bearer {key}"},
    )
    client.predict(api_name="/sign_in")
    return client


@pytest.fixture(scope="module")
def ui(server: Server, tenant_keys: dict[str, str], support_v1: dict) -> Iterator[Client]:
    """A UI session signed in as acme, which owns ``acme/support`` (version 1)."""
    client = ui_client(server, tenant_keys["acme"])
    yield client
    client.close()
