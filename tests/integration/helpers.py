"""Helpers the integration, UI and fault suites share: the one-fact training document, job
hyperparameters, new tenants over HTTP, waits on a job's state with a deadline, and the bicycle
handbook uploaded as a tenant's document with its retrieval setting, and the check that the
``openai`` client raised the error naming a parameter.

The session server and the HTTP helpers themselves live in :mod:`tests.integration.conftest`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import Server, auth

DOC = b"""# Lumen Lane Bikes

Q: Do you rent bikes?
A: Yes, city bikes rent for 15 euros a day.
"""
"""One fact: few samples and probes, so the trainer's evaluations stay short on a CPU."""
LONG = {"n_epochs": 30, "max_steps": 1000, "max_seq_tokens": 128}
"""A training that runs until it is cancelled or killed."""
WAIT_S = 600.0
"""Upper bound for a job to reach a state on two busy CPU cores (only a hang hits it)."""
HANDBOOK = Path(__file__).resolve().parents[2] / "examples" / "handbook.md"
HANDBOOK_QUESTION = "How long is the warranty on the frame of a new bicycle?"
"""A question the handbook's "Returns and warranty" passage answers."""


def upload_document(http: httpx.Client, key: str, path: Path = HANDBOOK) -> str:
    """Upload ``path`` as one of the tenant's documents; its file id."""
    files = {"file": (path.name, path.read_bytes(), "text/markdown")}
    response = http.post("/v1/files", headers=auth(key), data={"purpose": "fine-tune"}, files=files)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def set_retrieval(http: httpx.Client, key: str, tenant: str, retrieval: Any) -> httpx.Response:
    return http.patch(f"/v1/tenants/{tenant}", json={"retrieval": retrieval}, headers=auth(key))


def raw_job(srv: Server, key: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{srv.api_url}/fine_tuning/jobs/{job_id}", headers=auth(key), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(srv: Server, key: str, job_id: str, done: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = raw_job(srv, key, job_id)
        if done(job):
            return job
        if job["status"] in ("succeeded", "failed", "cancelled"):
            pytest.fail(f"{job_id} ended {job['status']} ({job['error']}) before {what}; log:\n{srv.log()}")
        time.sleep(0.5)
    pytest.fail(f"{job_id} never got to {what}: {raw_job(srv, key, job_id)}")


def training(job: dict[str, Any]) -> bool:
    """Running and past its first optimizer step (so the worker is deep in training)."""
    return job["status"] == "running" and bool(job["progress"]) and (job["progress"]["step"] or 0) >= 1


def ended(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def adapter_dirs(srv: Server, tenant: str) -> list[str]:
    root = srv.data / "adapters" / tenant
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def new_tenant(srv: Server, name: str) -> str:
    response = httpx.post(f"{srv.api_url}/tenants", json={"id": name}, headers=auth(srv.admin_key), timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def refused(call: Any, param: str, code: str | None = None, status: int = 400) -> openai.APIStatusError:
    """``call()`` raises the client's error for ``status`` naming ``param`` (and ``code``)."""
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    error = caught.value
    assert error.status_code == status and error.param == param, error.body
    assert code is None or error.code == code, error.body
    return error
