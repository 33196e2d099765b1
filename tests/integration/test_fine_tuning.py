"""Files and fine-tuning jobs end to end: real ``swaplora serve`` subprocesses, the real trainer
(``trainer.check`` and ``trainer.worker``), the official ``openai`` client.

Trainings are kept to a few short steps (``max_seq_tokens`` 128 on a one-fact document).
The restart test runs its own server on its own data directory: one job is killed mid-training
with the server (SIGKILL), another waits in the queue; the restarted server fails the first with
``server_restarted``, runs the second to the end and serves its adapter through chat.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest

from tests.integration.conftest import Server, auth, start_server, stop_server
from tests.integration.helpers import DOC, LONG, WAIT_S, adapter_dirs, new_tenant, pid_alive, training, wait_for
from tests.trainer.handbook_formats import write_docx, write_html, write_pdf, write_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY = {"n_epochs": 3, "max_steps": 3, "max_seq_tokens": 128}
"""A real training, three short steps."""
FILE_LIMIT = 200_000


# --------------------------------------------------------------------------------- restart


@pytest.fixture(scope="module")
def restarted(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A server killed with SIGKILL while one job trains and one waits, then started again on
    the same data directory (with a small upload limit, for the oversize test; no UI, which no
    test here opens: seconds saved per start)."""
    data = tmp_path_factory.mktemp("restart-data")
    admin_key = secrets.token_hex(16)
    first = start_server(embedded_model_dir, data, admin_key, "--no-ui", MAX_FILE_BYTES=str(FILE_LIMIT))
    try:
        key = new_tenant(first, "acme")
        client = first.openai(key)
        upload = client.files.create(file=("bikes.md", DOC), purpose="fine-tune")
        interrupted = client.fine_tuning.jobs.create(
            model="base", training_file=upload.id, suffix="interrupted", hyperparameters=LONG, seed=1
        )
        wait_for(first, key, interrupted.id, lambda j: j["status"] == "running", "running")
        queued = client.fine_tuning.jobs.create(
            model="base", training_file=upload.id, suffix="quick", hyperparameters=TINY, seed=2
        )
        wait_for(first, key, queued.id, lambda j: j["status"] == "queued", "the queue")
        with sqlite3.connect(data / "swaplora.db") as db:
            (pid,) = db.execute("SELECT pid FROM jobs WHERE id = ?", (interrupted.id,)).fetchone()
        assert pid and pid_alive(pid)
    except BaseException:
        stop_server(first.process)
        raise
    first.process.kill()
    first.process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker_outlived_server = pid_alive(pid)
    second = start_server(embedded_model_dir, data, admin_key, "--no-ui", MAX_FILE_BYTES=str(FILE_LIMIT))
    try:
        yield SimpleNamespace(
            server=second,
            key=key,
            client=second.openai(key),
            interrupted=interrupted.id,
            queued=queued.id,
            file=upload.id,
            worker_outlived_server=worker_outlived_server,
        )
    finally:
        stop_server(second.process)


def test_restart_fails_the_running_job_and_runs_the_queued_one(restarted: SimpleNamespace) -> None:
    srv, client = restarted.server, restarted.client
    assert not restarted.worker_outlived_server, "the worker must die with its server (PR_SET_PDEATHSIG)"
    # Follow the queued job live, from the restart to its end.
    with httpx.stream(
        "GET",
        f"{srv.api_url}/fine_tuning/jobs/{restarted.queued}/events",
        timeout=WAIT_S,
        headers={**auth(restarted.key), "Accept": "text/event-stream"},
    ) as live:
        assert live.status_code == 200
        lines = [line[len("data: ") :] for line in live.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    streamed = [json.loads(line) for line in lines[:-1]]
    assert any(e["type"] == "metrics" and "train_loss" in (e["data"] or {}) for e in streamed), streamed
    assert streamed[-1]["message"] == "The job has successfully completed."

    interrupted = client.fine_tuning.jobs.retrieve(restarted.interrupted)
    assert interrupted.status == "failed" and interrupted.error.code == "server_restarted", interrupted
    assert interrupted.fine_tuned_model is None
    assert "interrupted" not in adapter_dirs(srv, "acme")

    done = client.fine_tuning.jobs.retrieve(restarted.queued)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == "acme/quick@1" and done.trained_tokens and done.trained_tokens > 0
    assert done.organization_id == "acme" and done.finished_at >= done.created_at
    extra = done.model_extra or {}
    assert extra["progress"]["step"] == extra["progress"]["total_steps"] >= 1
    assert isinstance(extra["metrics"], dict) and extra["metrics"]
    events = list(client.fine_tuning.jobs.list_events(restarted.queued, limit=2))  # pages through all
    assert [e.message for e in events] == [e["message"] for e in reversed(streamed)]

    assert "acme/quick" in {m.id for m in client.models.list().data}
    answer = client.chat.completions.create(
        model=done.fine_tuned_model,
        max_tokens=12,
        temperature=0,
        messages=[{"role": "user", "content": "Do you rent bikes?"}],
    )
    assert answer.model == done.fine_tuned_model and answer.choices[0].message.content


def test_oversize_upload_is_413(restarted: SimpleNamespace) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        restarted.client.files.create(file=("big.md", b"# Big\n\n" + b"word " * FILE_LIMIT), purpose="fine-tune")
    assert info.value.status_code == 413
    assert [f.filename for f in restarted.client.files.list()] == ["bikes.md"]


# --------------------------------------------------------------------------------- files


def every_kind(directory: Path) -> dict[str, bytes]:
    chat = ROOT / "examples" / "chat.jsonl"
    return {
        "handbook.md": (ROOT / "examples" / "handbook.md").read_bytes(),
        "handbook.txt": write_text(directory / "handbook.txt").read_bytes(),
        "handbook.html": write_html(directory / "handbook.html").read_bytes(),
        "handbook.docx": write_docx(directory / "handbook.docx").read_bytes(),
        "handbook.pdf": write_pdf(directory / "handbook.pdf").read_bytes(),
        "chat.jsonl": b"".join(line + b"\n" for line in chat.read_bytes().splitlines() if b'"messages"' in line),
        "pairs.jsonl": b'{"prompt": "Where is the shop?", "completion": "At 12 Canal Street."}\n',
        "faq.csv": (ROOT / "examples" / "faq.csv").read_bytes(),
    }


def test_every_supported_kind_uploads(acme: openai.OpenAI, tmp_path: Path) -> None:
    uploaded = {}
    for name, content in every_kind(tmp_path).items():
        stored = acme.files.create(file=(name, content), purpose="fine-tune")
        assert (stored.filename, stored.bytes, stored.purpose) == (name, len(content), "fine-tune")
        assert (stored.model_extra or {}).get("records", 0) > 0, stored
        uploaded[name] = stored.id
    listed = {f.id: f.filename for f in acme.files.list()}
    assert all(listed.get(file_id) == name for name, file_id in uploaded.items())
    assert acme.files.retrieve(uploaded["faq.csv"]).filename == "faq.csv"
    assert acme.files.delete(uploaded["faq.csv"]).deleted
    with pytest.raises(openai.NotFoundError):
        acme.files.retrieve(uploaded["faq.csv"])


def blank_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 50)
    return bytes(pdf.output())


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.md", b""),
        ("setup.exe", b"MZ\x90\x00" + b"\x00" * 100),
        ("corrupt.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> garbage"),
        ("scan.pdf", None),
        ("latin1.txt", "Caf\xe9 Lumen opens at nine.".encode("latin-1")),
        ("rows.jsonl", b'{"question": "Where?", "reply": "Here."}\n'),
    ],
)
def test_bad_uploads_are_400_invalid_file(
    acme: openai.OpenAI, server: Server, name: str, content: bytes | None
) -> None:
    before = sorted(p.name for p in (server.data / "files").iterdir())
    with pytest.raises(openai.BadRequestError) as info:
        acme.files.create(file=(name, blank_pdf() if content is None else content), purpose="fine-tune")
    assert info.value.code == "invalid_file" and name in info.value.message
    assert sorted(p.name for p in (server.data / "files").iterdir()) == before


# --------------------------------------------------------------------------------- jobs


@pytest.fixture(scope="module")
def bikes(acme: openai.OpenAI) -> str:
    return acme.files.create(file=("bikes.md", DOC), purpose="fine-tune").id


def test_bad_job_requests_are_4xx(acme: openai.OpenAI, globex: openai.OpenAI, bikes: str) -> None:
    before = [j.id for j in acme.fine_tuning.jobs.list()]
    theirs = globex.files.create(file=("theirs.md", DOC), purpose="fine-tune").id
    with pytest.raises(openai.NotFoundError) as foreign:
        acme.fine_tuning.jobs.create(model="base", training_file=theirs)
    with pytest.raises(openai.NotFoundError) as missing:
        acme.fine_tuning.jobs.create(model="base", training_file="file-000000000000000000000000")
    assert foreign.value.code == missing.value.code == "file_not_found"
    for model in ("gpt-4o-mini", "acme/never-trained", "globex/anything"):
        with pytest.raises(openai.NotFoundError) as info:
            acme.fine_tuning.jobs.create(model=model, training_file=bikes)
        assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        acme.fine_tuning.jobs.create(model="base", training_file=bikes, hyperparameters={"n_epochs": 0})
    assert info.value.code == "invalid_hyperparameters" and info.value.param == "hyperparameters.n_epochs"
    assert [j.id for j in acme.fine_tuning.jobs.list()] == before


def test_cancel_a_running_job(server: Server, tenant_keys: dict[str, str], acme: openai.OpenAI, bikes: str) -> None:
    job = acme.fine_tuning.jobs.create(model="base", training_file=bikes, suffix="cancelled", hyperparameters=LONG)
    assert job.status == "validating_files" and job.suffix == "cancelled"
    wait_for(server, tenant_keys["acme"], job.id, training, "training")
    cancelled = acme.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None and cancelled.error is None
    assert acme.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert "cancelled" not in adapter_dirs(server, "acme")
    assert "acme/cancelled" not in {m.id for m in acme.models.list().data}
    with pytest.raises(openai.NotFoundError):
        server.openai(tenant_keys["globex"]).fine_tuning.jobs.retrieve(job.id)
