"""One ``swaplora serve --cluster local --replicas 2`` for this package's tests: a local Ray instance
started by the server, two engine replicas of the embedded model on the CPU (one thread each), and
fine-tuning jobs as Ray tasks."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_lora
from tests.integration.conftest import Server, auth, start_server, stop_server

ADAPTERS = 8


@pytest.fixture(scope="package")
def cluster(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("cluster-data")
    flags = ("--cluster", "local", "--replicas", "2", "--no-ui")
    # Half a CPU per replica and per training task: both replicas and a job fit Ray's 2 CPUs here.
    cpus = {"CLUSTER_REPLICA_CPUS": "0.5", "CLUSTER_TRAINING_CPUS": "0.5"}
    srv = start_server(embedded_model_dir, data, secrets.token_hex(16), *flags, TORCH_THREADS="1", **cpus)
    try:
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture(scope="package")
def admin(cluster: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=300, headers=auth(cluster.admin_key)) as client:
        yield client


@pytest.fixture(scope="package")
def acme_key(admin: httpx.Client) -> str:
    response = admin.post("/v1/tenants", json={"id": "acme"})
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


@pytest.fixture(scope="package")
def loras(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two rank-8 all-linear LoRAs for the embedded base, with different random weights."""
    return [make_lora(embedded_model_dir, tmp_path_factory.mktemp(f"lora-{i}"), rank=8, seed=i) for i in (1, 2)]
