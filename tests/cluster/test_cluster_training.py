"""Fine-tuning jobs as Ray tasks in ``swaplora serve --cluster``: a job trains in a Ray actor and its
adapter is served by the replicas at once; killing the actor's process mid-training fails the job
``trainer_crashed`` with nothing published, and chat goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import running_job
from tests.integration.conftest import PROMPT, Server, auth
from tests.integration.helpers import LONG, adapter_dirs, ended, training, wait_for

pytestmark = pytest.mark.integration
SHORT = {"n_epochs": 1, "max_steps": 2, "max_seq_tokens": 128}


def training_hosts() -> list[int]:
    """Pids of the processes running a Ray ``TrainingHost`` actor on this machine."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"ray::TrainingHost" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def chat(srv: Server, key: str, model: str) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4}
    response = httpx.post(f"{srv.api_url}/chat/completions", json=body, headers=auth(key), timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_job_trains_as_a_ray_task_and_its_adapter_is_served(cluster: Server, acme_key: str) -> None:
    job_id = running_job(cluster, acme_key, SHORT, "raytrained")
    job = wait_for(cluster, acme_key, job_id, ended, "its end")
    assert job["status"] == "succeeded", job
    model = job["fine_tuned_model"]
    assert model.startswith("acme/raytrained@")
    assert chat(cluster, acme_key, model)["model"] == model  # published by the task, served by a replica


def test_killing_the_training_actor_fails_the_job_cleanly(cluster: Server, acme_key: str) -> None:
    before = set(training_hosts())
    job_id = running_job(cluster, acme_key, LONG, "raykilled")
    wait_for(cluster, acme_key, job_id, training, "training")
    hosts = set(training_hosts()) - before
    assert len(hosts) == 1, f"the job should run in one Ray TrainingHost actor: {hosts}"
    os.kill(hosts.pop(), signal.SIGKILL)
    killed = time.monotonic()
    job = wait_for(cluster, acme_key, job_id, ended, "its end")
    assert job["status"] == "failed" and job["error"]["code"] == "trainer_crashed", job
    assert job["fine_tuned_model"] is None and "raykilled" not in adapter_dirs(cluster, "acme")
    assert chat(cluster, acme_key, "base")["choices"][0]["message"]["content"]
    print(f"\n[training actor killed] job failed trainer_crashed {time.monotonic() - killed:.2f} s later")
