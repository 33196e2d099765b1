"""kill -9 of the server while an adapter upload is being spooled and published, a training file
is being checked and a job trains; then a restart on the same data directory. After the
start-up sweep (:mod:`server.leftovers`) and the runner's recovery, the adapter store, the
database and the files on disk agree: no spool, no half version, no file without its row (or
row without its file), the job ``failed`` with ``server_restarted`` and nothing published for it.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.conftest import make_lora
from tests.faults.conftest import DOC, Launch, chat_works, poll, running_job, visible_versions, worker_pid
from tests.integration.conftest import adapter_files, auth, upload_ok
from tests.integration.helpers import LONG, new_tenant, pid_alive, training, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def spooling(data: Path, prefix: str = "") -> list[str]:
    """Upload spools under ``<data>/tmp`` (whose names start with ``prefix``) and half-written
    versions of ``acme/support`` in the store."""
    tmp = data / "tmp"
    spools = [p.name for p in tmp.iterdir() if p.name.startswith(prefix)] if tmp.is_dir() else []
    support = data / "adapters" / "acme" / "support"
    halves = [p.name for p in support.iterdir() if p.name.startswith(".")] if support.is_dir() else []
    return spools + halves


def outcome(future: Future) -> str:
    try:
        response = future.result(timeout=60)
    except httpx.HTTPError as exc:
        return f"cut ({type(exc).__name__})"
    return f"answered {response.status_code}"


@pytest.fixture(scope="module")
def restarted(launch: Launch, embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    data = tmp_path_factory.mktemp("killed-data")
    admin_key = secrets.token_hex(16)
    big = make_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-big"), rank=16, seed=3)
    small = make_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-small"), rank=4, seed=4)
    first = launch(data=data, admin_key=admin_key)
    key = new_tenant(first, "acme")
    upload_ok(httpx.Client(base_url=first.url, timeout=300), key, small, "support")  # version 1
    job_id = running_job(first, key, LONG, "interrupted")
    wait_for(first, key, job_id, training, "training")
    pid = worker_pid(data, job_id)

    with ThreadPoolExecutor(2) as pool:
        document = pool.submit(
            httpx.post,
            f"{first.api_url}/files",
            headers=auth(key),
            data={"purpose": "fine-tune"},
            files={"file": ("late.md", DOC, "text/markdown")},
            timeout=300,
        )
        poll(lambda: spooling(data, "file-upload-") or document.done(), 60, "the file upload's spool")
        adapter = pool.submit(
            httpx.post,
            f"{first.api_url}/adapters",
            headers=auth(key),
            data={"name": "support"},
            files=adapter_files(big),
            timeout=300,
        )
        seen = poll(
            lambda: spooling(data, "upload-") or (["(the upload ended first)"] if adapter.done() else None),
            120,
            "the adapter upload's spool",
            every=0.002,
        )
        first.process.kill()
        first.process.wait(timeout=60)
        killed = SimpleNamespace(seen=seen, left=spooling(data), adapter=outcome(adapter), document=outcome(document))
    print(
        f"\n[server kill] saw {killed.seen}; left on disk {killed.left}; adapter upload {killed.adapter}; "
        f"file upload {killed.document}"
    )
    poll(lambda: not pid_alive(pid), 60, "the worker dying with its server")
    started = time.monotonic()
    second = launch(data=data, admin_key=admin_key)
    print(f"[server kill] restart ready in {time.monotonic() - started:.1f} s")
    return SimpleNamespace(server=second, key=key, job_id=job_id, killed=killed)


def rows(data: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "swaplora.db") as db:
        return db.execute(sql).fetchall()


def test_no_spool_and_no_half_version_survive(restarted: SimpleNamespace) -> None:
    data = restarted.server.data
    assert not list((data / "tmp").iterdir()) if (data / "tmp").is_dir() else True
    stray = [
        str(p.relative_to(data))
        for p in (data / "adapters").rglob(".*")
        if p.name.startswith((".tmp-", ".trash-")) or (p.is_file() and p.name.endswith(".tmp"))
    ]
    assert not stray, stray
    assert rows(data, "PRAGMA integrity_check") == [("ok",)]


def test_the_store_on_disk_is_what_the_api_lists(restarted: SimpleNamespace) -> None:
    srv, key = restarted.server, restarted.key
    support = srv.data / "adapters" / "acme" / "support"
    on_disk = sorted(int(p.name) for p in support.iterdir() if p.name.isdigit())
    visible = visible_versions(srv, key)
    assert visible == {"acme/support": on_disk}, (visible, on_disk)
    assert on_disk[0] == 1 and on_disk in ([1], [1, 2]), on_disk
    current = int((support / "current").read_text())
    assert current == on_disk[-1]
    for version in on_disk:
        assert sorted(p.name for p in (support / str(version)).iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
            "manifest.json",
        ]
    if restarted.killed.adapter == "answered 201":
        assert on_disk == [1, 2], "a version the client was told about is gone"
    print(f"\n[server kill] after the restart acme/support has versions {on_disk}")
    chat = httpx.post(
        f"{srv.api_url}/chat/completions",
        headers=auth(key),
        timeout=300,
        json={"model": "acme/support", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert chat.status_code == 200, chat.text


def test_files_on_disk_are_the_rows(restarted: SimpleNamespace) -> None:
    srv = restarted.server
    on_disk = sorted(p.name for p in (srv.data / "files").iterdir())
    in_db = sorted(row[0] for row in rows(srv.data, "SELECT id FROM files"))
    listed = httpx.get(f"{srv.api_url}/files", headers=auth(restarted.key), timeout=60).json()["data"]
    assert on_disk == in_db == sorted(f["id"] for f in listed), (on_disk, in_db, listed)
    names = sorted(f["filename"] for f in listed)
    assert names in (["bikes.md"], ["bikes.md", "late.md"]), names


def test_the_interrupted_job_failed_and_published_nothing(restarted: SimpleNamespace) -> None:
    srv, key, job_id = restarted.server, restarted.key, restarted.job_id
    job = httpx.get(f"{srv.api_url}/fine_tuning/jobs/{job_id}", headers=auth(key), timeout=60).json()
    assert job["status"] == "failed" and job["error"]["code"] == "server_restarted", job
    assert job["fine_tuned_model"] is None
    assert "acme/interrupted" not in visible_versions(srv, key)
    assert not (srv.data / "adapters" / "acme" / "interrupted").exists()
    assert sorted(p.name for p in (srv.data / "jobs" / job_id).iterdir()) == ["spec.json", "worker.log"]
    chat_works(srv, key)
