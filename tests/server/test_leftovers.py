"""What a crash leaves on disk is swept at start-up; what was complete stays."""

from __future__ import annotations

from pathlib import Path

from adapters.store import AdapterRef, AdapterStore
from server.jobs.training_files import FileStore
from server.leftovers import sweep
from tests.adapters.helpers import publish, visible_tree


def test_a_crashs_leftovers_go_and_complete_data_stays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = AdapterStore(data / "adapters")
    files = FileStore(data / "swaplora.db", data / "files")
    publish(store)
    upload = tmp_path / "upload.md"
    upload.write_text("# Hours\nOpen at nine.")
    kept = files.add("acme", "hours.md", "fine-tune", upload, {"format": "markdown", "records": 1})
    complete = visible_tree(data)

    adapter_dir = data / "adapters" / "acme" / "support"
    (adapter_dir / ".tmp-0123abcd").mkdir()  # a publish that died before its rename
    (adapter_dir / ".tmp-0123abcd" / "adapter_model.safetensors").write_bytes(b"half")
    (data / "adapters" / "acme" / ".trash-4567").mkdir()  # a delete that died after its rename
    (adapter_dir / f".current.{'a' * 32}").write_text("2\n")  # an atomic write that died half-way
    (data / "files" / "file-000000000000000000000000").write_bytes(b"moved, never recorded")
    (data / "tmp" / "upload-1").mkdir(parents=True)  # an upload spool
    (data / "tmp" / "file-upload-2").write_bytes(b"spooled")
    vectors = data / "knowledge-vectors" / "acme"
    vectors.mkdir(parents=True)
    (vectors / "file-000000000000000000000001.safetensors").write_bytes(b"complete vectors stay")
    complete = sorted(
        {
            *complete,
            "knowledge-vectors",
            "knowledge-vectors/acme",
            "knowledge-vectors/acme/file-000000000000000000000001.safetensors",
        }
    )
    (vectors / ".tmp-89abcdef.safetensors").write_bytes(b"half")  # vectors written when the server died

    counts = sweep(data, store, files)
    assert counts == {"upload_spools": 2, "store_leftovers": 3, "orphan_files": 1, "vector_spools": 1}
    assert visible_tree(data) == sorted({*complete, "tmp"})
    assert store.resolve(AdapterRef("acme", "support")).manifest.version == 1
    assert files.get(kept.id, "acme") is not None and files.path(kept).read_text().startswith("# Hours")
    assert set(sweep(data, store, files).values()) == {0}


def test_the_server_sweeps_before_it_serves(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    settings = Settings(data=tmp_path / "data", model=str(tmp_path / "no-model"))
    (settings.data / "tmp" / "upload-1").mkdir(parents=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert not any((settings.data / "tmp").iterdir())
