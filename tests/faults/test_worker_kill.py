"""kill -9 of a training worker, before its first step and mid-training: the job ends ``failed``
with ``trainer_crashed``, no version of its adapter becomes visible, its scratch is cleaned, and
chat keeps answering meanwhile. One server for the module (only workers are killed).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import Launch, chat_works, db_row, poll, running_job, visible_versions, worker_pid
from tests.integration.conftest import Server
from tests.integration.helpers import LONG, adapter_dirs, ended, new_tenant, pid_alive, training, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(launch: Launch) -> Server:
    return launch()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return new_tenant(server, "acme")


def kill_and_check(srv: Server, key: str, job_id: str, pid: int, suffix: str) -> None:
    """SIGKILL the worker; the job must end failed/trainer_crashed with nothing published."""
    step = db_row(srv.data, "SELECT step FROM jobs WHERE id = ?", job_id)[0]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    chat_s = chat_works(srv, key)  # serving goes on while the runner notices
    job = wait_for(srv, key, job_id, ended, "its end")
    noticed_s = time.monotonic() - killed
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "trainer_crashed" and "SIGKILL" in job["error"]["message"], job["error"]
    assert job["fine_tuned_model"] is None
    assert f"acme/{suffix}" not in visible_versions(srv, key)
    assert suffix not in adapter_dirs(srv, "acme")
    assert sorted(p.name for p in (srv.data / "jobs" / job_id).iterdir()) == ["spec.json", "worker.log"]
    assert not pid_alive(pid)
    chat_works(srv, key)
    print(
        f"\n[worker kill at step {step}] job failed trainer_crashed {noticed_s:.2f} s after SIGKILL; "
        f"a chat meanwhile took {chat_s:.2f} s"
    )


def test_kill_9_of_the_worker_before_its_first_step(server: Server, key: str) -> None:
    job_id = running_job(server, key, LONG, "early")
    pid = poll(lambda: worker_pid(server.data, job_id), 120, "the worker's pid", every=0.01)
    assert db_row(server.data, "SELECT step FROM jobs WHERE id = ?", job_id)[0] in (None, 0)
    kill_and_check(server, key, job_id, pid, "early")


def test_kill_9_of_the_worker_mid_training(server: Server, key: str) -> None:
    job_id = running_job(server, key, LONG, "midway")
    wait_for(server, key, job_id, training, "training")
    chat_works(server, key)  # while the worker trains
    kill_and_check(server, key, job_id, worker_pid(server.data, job_id), "midway")
