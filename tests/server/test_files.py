"""The file store on a real SQLite file and ``/v1/files`` through Starlette with the real
``trainer.check`` subprocess: accepted and refused uploads, the size cap, tenant scoping, paging
and deletion. Nothing refused may leave a trace under the data directory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.errors import install_error_handlers
from server.jobs.file_check import FileChecker
from server.jobs.training_files import FileStore
from server.routes import files as file_routes
from server.settings import Settings
from tests.server.helpers import ADMIN, ADMIN_KEY, HANDBOOK, assert_error, bearer, real_services

ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_BYTES = 64 * 1024


@pytest.fixture
def env(tmp_path: Path) -> SimpleNamespace:
    settings = Settings(data=tmp_path / "data", admin_key=ADMIN_KEY, max_file_bytes=MAX_FILE_BYTES)
    services = real_services(settings)
    tenants, files = services.tenants, services.files
    app = Starlette(routes=file_routes.routes)
    install_error_handlers(app)
    app.state.services = services
    keys = {t: bearer(tenants.create_tenant(t)[1]) for t in ("acme", "globex")}
    return SimpleNamespace(client=TestClient(app), settings=settings, files=files, **keys)


def upload(env: SimpleNamespace, headers: dict, name: str, content: bytes, **data: str):
    return env.client.post(
        "/v1/files",
        headers=headers,
        data={"purpose": "fine-tune", **data},
        files={"file": (name, content, "application/octet-stream")},
    )


def kept_files(env: SimpleNamespace) -> list[str]:
    """Everything under the file store and the upload spool."""
    roots = [env.settings.files_dir, env.settings.data / "tmp"]
    return sorted(str(p) for root in roots if root.exists() for p in root.rglob("*"))


# ------------------------------------------------------------------------------- store


def test_store_adds_lists_and_deletes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "db.sqlite", tmp_path / "files")
    added = []
    for i in range(3):
        source = tmp_path / f"in{i}.md"
        source.write_text(f"# Doc {i}\n")
        added.append(store.add("acme", f"doc{i}.md", "fine-tune", source, {"format": "markdown", "records": 1}))
        assert not source.exists() and store.path(added[-1]).read_text() == f"# Doc {i}\n"
    assert added[0].id.startswith("file-") and added[0].bytes == len("# Doc 0\n")
    assert (added[0].format, added[0].records, added[0].filename) == ("markdown", 1, "doc0.md")
    page, more = store.list_files("acme", limit=2)
    assert [f.id for f in page] == [added[2].id, added[1].id] and more
    rest, more = store.list_files("acme", after=page[-1].id, limit=2)
    assert [f.id for f in rest] == [added[0].id] and not more
    oldest_first, _ = store.list_files("acme", order="asc")
    assert [f.id for f in oldest_first] == [f.id for f in added]
    assert store.list_files("globex")[0] == [] and store.get(added[0].id, "globex") is None
    assert not store.delete(added[0].id, "globex") and store.path(added[0]).exists()
    assert store.delete(added[0].id, "acme") and not store.path(added[0]).exists()
    assert store.get(added[0].id, None) is None and not store.delete(added[0].id, None)
    reopened = FileStore(tmp_path / "db.sqlite", tmp_path / "files")
    assert [f.id for f in reopened.list_files(None)[0]] == [added[2].id, added[1].id]


# ------------------------------------------------------------------------------- routes


def test_upload_is_checked_and_kept(env: SimpleNamespace) -> None:
    response = upload(env, env.acme, "handbook.md", HANDBOOK)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "file" and body["id"].startswith("file-") and body["purpose"] == "fine-tune"
    assert (body["filename"], body["bytes"], body["status"]) == ("handbook.md", len(HANDBOOK), "processed")
    assert body["format"] == "markdown" and body["records"] > 0
    assert (env.settings.files_dir / body["id"]).read_bytes() == HANDBOOK
    assert env.client.get(f"/v1/files/{body['id']}", headers=env.acme).json() == body
    content = env.client.get(f"/v1/files/{body['id']}/content", headers=env.acme)
    assert content.status_code == 200 and content.content == HANDBOOK
    assert_error(env.client.get(f"/v1/files/{body['id']}/content", headers=env.globex), 404, "file_not_found")
    listed = env.client.get("/v1/files", headers=env.acme).json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [body["id"]]
    assert not list((env.settings.data / "tmp").iterdir())


def test_a_file_name_that_looks_like_an_option_is_just_a_name(env: SimpleNamespace) -> None:
    response = upload(env, env.acme, "-notes.txt", b"The shop opens at nine on weekdays.")
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "-notes.txt" and response.json()["records"] > 0


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.md", b"", "empty"),
        ("latin1.txt", "Caf\xe9 opens at nine.".encode("latin-1"), "UTF-8"),
        ("broken.pdf", b"%PDF-1.4\n this is not really a PDF", "broken.pdf"),
        ("rows.jsonl", b'{"text": "no messages here"}\n', "rows.jsonl"),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "photo.png"),
    ],
)
def test_bad_files_are_refused_with_the_checkers_message(
    env: SimpleNamespace, name: str, content: bytes, needle: str
) -> None:
    error = assert_error(upload(env, env.acme, name, content), 400, "invalid_file")
    assert needle in error["message"] and error["param"] == "file"
    assert kept_files(env) == [] or all(Path(p).is_dir() for p in kept_files(env))
    assert env.files.list_files(None)[0] == []


def test_oversize_upload_is_413_and_leaves_nothing(env: SimpleNamespace) -> None:
    assert_error(upload(env, env.acme, "big.md", b"# Big\n" + b"word " * MAX_FILE_BYTES), 413, "upload_too_large")

    def chunks():  # no Content-Length: the cap must hold while the body streams
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.md"\r\n\r\n'
        for _ in range(40):
            yield b"word " * 1000
        yield b"\r\n--b--\r\n"

    response = env.client.post(
        "/v1/files", headers={**env.acme, "content-type": "multipart/form-data; boundary=b"}, content=chunks()
    )
    assert_error(response, 413, "upload_too_large")
    assert env.files.list_files(None)[0] == []


def test_bad_forms_are_400(env: SimpleNamespace) -> None:
    assert_error(upload(env, env.acme, "a.md", HANDBOOK, purpose="assistants"), 400)
    no_file = env.client.post("/v1/files", headers=env.acme, files={"purpose": (None, b"fine-tune")})
    assert assert_error(no_file, 400)["param"] == "file"
    assert_error(upload(env, env.acme, "a.md", HANDBOOK, colour="blue"), 400)
    assert_error(env.client.post("/v1/files", headers=env.acme, json={"purpose": "fine-tune"}), 415)
    assert_error(env.client.post("/v1/files", data={"purpose": "fine-tune"}), 401, "missing_api_key")


def test_files_are_private_to_their_tenant(env: SimpleNamespace) -> None:
    mine = upload(env, env.acme, "handbook.md", HANDBOOK).json()["id"]
    foreign = assert_error(env.client.get(f"/v1/files/{mine}", headers=env.globex), 404, "file_not_found")
    missing = assert_error(env.client.get("/v1/files/file-000000000000000000000000", headers=env.globex), 404)
    assert foreign["message"].replace(mine, "X") == missing["message"].replace("file-000000000000000000000000", "X")
    assert_error(env.client.delete(f"/v1/files/{mine}", headers=env.globex), 404, "file_not_found")
    assert env.client.get("/v1/files", headers=env.globex).json()["data"] == []
    assert_error(upload(env, env.globex, "h.md", HANDBOOK, tenant="acme"), 404)
    assert [f["id"] for f in env.client.get("/v1/files", headers=ADMIN).json()["data"]] == [mine]
    assert env.client.get("/v1/files?tenant=globex", headers=ADMIN).json()["data"] == []
    deleted = env.client.delete(f"/v1/files/{mine}", headers=env.acme)
    assert deleted.json() == {"id": mine, "object": "file", "deleted": True}
    assert_error(env.client.get(f"/v1/files/{mine}", headers=env.acme), 404)
    assert not (env.settings.files_dir / mine).exists()


def test_admin_uploads_only_for_a_named_tenant(env: SimpleNamespace) -> None:
    assert_error(upload(env, ADMIN, "handbook.md", HANDBOOK), 400)
    assert_error(upload(env, ADMIN, "handbook.md", HANDBOOK, tenant="nobody"), 404)
    body = upload(env, ADMIN, "handbook.md", HANDBOOK, tenant="globex").json()
    assert env.files.get(body["id"], "globex") is not None


def test_a_checker_that_crashes_or_hangs_refuses_the_file(tmp_path: Path) -> None:
    import asyncio
    import sys

    crash = FileChecker(timeout_s=30, memory_bytes=None, command=[sys.executable, "-c", "raise SystemExit(3)"])
    verdict = asyncio.run(crash.check_file(tmp_path / "x.md", "x.md"))
    assert (
        verdict["ok"] is False and verdict["code"] == "invalid_file" and "x.md could not be read" in verdict["message"]
    )
    hang = FileChecker(timeout_s=0.5, memory_bytes=None, command=[sys.executable, "-c", "import time; time.sleep(60)"])
    verdict = asyncio.run(hang.check_file(tmp_path / "x.md", "x.md"))
    assert verdict["ok"] is False and "longer than" in verdict["message"]
    greedy = FileChecker(
        timeout_s=30,
        memory_bytes=256 * 1024 * 1024,
        command=[sys.executable, "-c", "b = bytearray(1024 ** 3); print('{\"ok\": true}')"],
    )
    assert asyncio.run(greedy.check_file(tmp_path / "x.md", "x.md"))["ok"] is False
    garbage = FileChecker(timeout_s=30, memory_bytes=None, command=[sys.executable, "-c", "print('hello')"])
    assert "no verdict" in asyncio.run(garbage.check_file(tmp_path / "x.md", "x.md"))["message"]


def test_checkers_are_bounded_and_the_kernel_kills_them_first(tmp_path: Path) -> None:
    """A burst of uploads never forks more than ``max_running`` checkers: the rest wait, then 429;
    and a checker (like a training worker) is the out-of-memory killer's first choice."""
    import asyncio
    import sys

    from server.errors import APIError

    report = FileChecker(
        timeout_s=30,
        memory_bytes=None,
        max_running=7,
        command=[
            sys.executable,
            "-c",
            "import json; print(json.dumps({'ok': True, 'adj': open('/proc/self/oom_score_adj').read().strip()}))",
        ],
    )
    assert asyncio.run(report.check_file(tmp_path / "x.md", "x.md"))["adj"] == "1000"

    slow = FileChecker(
        timeout_s=30,
        memory_bytes=None,
        max_running=1,
        wait_s=0.3,
        command=[sys.executable, "-c", "import time; time.sleep(2); print('{\"ok\": true}')"],
    )

    async def burst() -> list[object]:
        return await asyncio.gather(
            *(slow.check_file(tmp_path / "x.md", "x.md") for _ in range(3)), return_exceptions=True
        )

    outcomes = asyncio.run(burst())
    refused = [o for o in outcomes if isinstance(o, APIError)]
    assert len(refused) == 2 and all(o.status == 429 for o in refused)
    assert [o for o in outcomes if isinstance(o, dict)] == [{"ok": True}]
