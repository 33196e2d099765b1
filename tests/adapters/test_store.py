"""AdapterStore on a real temp directory: publish, read, rollback, delete, failures, concurrency."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.ids import AdapterRef, InvalidId
from adapters.manifest import AdapterManifest
from adapters.store import AdapterNotFound, AdapterStore, StoreError
from tests.adapters.helpers import FILES, make_manifest, manifest_for, publish, visible_tree


def test_publish_writes_a_complete_version(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    source = tmp_path / "upload.bin"
    source.write_bytes(b"copied from a file")
    m = store.publish(
        "acme",
        "support",
        {"adapter_config.json": b"{}", "adapter_model.safetensors": source},
        manifest_for("acme", "support"),
    )
    assert m.model_id == "acme/support@1"
    directory = tmp_path / "acme" / "support" / "1"
    assert sorted(p.name for p in directory.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    assert (directory / "adapter_model.safetensors").read_bytes() == b"copied from a file"
    assert AdapterManifest.read(directory / "manifest.json") == m
    assert store.current_version("acme", "support") == 1
    assert not [p for p in (tmp_path / "acme" / "support").iterdir() if p.name.startswith(".tmp")]


def test_versions_resolve_and_listing(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    publish(store)
    second = publish(store, metrics={"eval_loss": 0.5})
    publish(store, "acme", "sales")
    publish(store, "globex", "support")
    (tmp_path / "acme" / ".tmp-leftover").mkdir()
    (tmp_path / "acme" / "half-published").mkdir()  # no current file: not an adapter
    (tmp_path / "Not_A_Tenant").mkdir()

    assert second.version == 2 and store.current_version("acme", "support") == 2
    assert [m.version for m in store.versions("acme", "support")] == [1, 2]
    assert store.manifest("acme", "support", 2) == second
    resolved = store.resolve(AdapterRef("acme", "support"))
    assert resolved.manifest == second and resolved.path == tmp_path / "acme" / "support" / "2"
    assert resolved.weights_path.read_bytes() == b"weights"
    assert store.resolve(AdapterRef("acme", "support", 1)).manifest.version == 1

    listing = store.list_adapters("acme")
    assert [(s.adapter_id, s.current_version, s.versions) for s in listing] == [
        ("acme/sales", 1, (1,)),
        ("acme/support", 2, (1, 2)),
    ]
    assert [s.adapter_id for s in store.list_adapters()] == ["acme/sales", "acme/support", "globex/support"]
    assert store.list_adapters("nobody") == []


def test_missing_things_raise_adapter_not_found(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    publish(store)
    with pytest.raises(AdapterNotFound):
        store.resolve(AdapterRef("acme", "nope"))
    with pytest.raises(AdapterNotFound):
        store.resolve(AdapterRef("acme", "support", 7))
    with pytest.raises(AdapterNotFound):
        store.versions("globex", "support")
    with pytest.raises(AdapterNotFound):
        store.manifest("acme", "support", 0)
    assert isinstance(AdapterNotFound("x"), KeyError) and str(AdapterNotFound("x")) == "x"


def test_rollback(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    publish(store), publish(store), publish(store)
    assert store.rollback("acme", "support", 1).version == 1
    assert store.resolve(AdapterRef("acme", "support")).manifest.version == 1
    store.rollback("acme", "support", 3)  # forward again
    assert store.current_version("acme", "support") == 3
    with pytest.raises(AdapterNotFound):
        store.rollback("acme", "support", 4)
    with pytest.raises(AdapterNotFound):
        store.rollback("acme", "other", 1)
    assert store.current_version("acme", "support") == 3


def test_delete_versions_and_adapter(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    for _ in range(3):
        publish(store)
    store.rollback("acme", "support", 2)
    store.delete("acme", "support", 1)  # not current: current stays
    assert store.current_version("acme", "support") == 2
    store.delete("acme", "support", 2)  # current: moves to the newest remaining
    assert store.current_version("acme", "support") == 3
    assert [m.version for m in store.versions("acme", "support")] == [3]
    with pytest.raises(AdapterNotFound):
        store.delete("acme", "support", 2)
    store.delete("acme", "support", 3)  # the last one: the adapter goes
    assert store.list_adapters("acme") == []
    with pytest.raises(AdapterNotFound):
        store.current_version("acme", "support")
    assert not [p for p in (tmp_path / "acme").iterdir() if p.name.startswith(".trash")]

    publish(store, "acme", "sales"), publish(store, "acme", "sales")
    store.delete("acme", "sales")
    assert not (tmp_path / "acme" / "sales").exists()
    with pytest.raises(AdapterNotFound):
        store.delete("acme", "sales")


def test_version_numbers_are_never_reused(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    publish(store), publish(store)
    store.delete("acme", "support", 2)
    assert publish(store).version == 3
    store.delete("acme", "support")
    assert publish(store).version == 4


@pytest.mark.parametrize(
    ("files", "make", "error"),
    [
        ({"adapter_config.json": b"{}"}, manifest_for("acme", "support"), StoreError),
        ({**FILES, "manifest.json": b"{}"}, manifest_for("acme", "support"), StoreError),
        ({**FILES, "../escape": b"x"}, manifest_for("acme", "support"), StoreError),
        ({**FILES, ".hidden": b"x"}, manifest_for("acme", "support"), StoreError),
        (FILES, manifest_for("acme", "other"), StoreError),
        (FILES, lambda v: dataclasses.replace(make_manifest(), version=v + 1), StoreError),
        (
            {**FILES, "adapter_model.safetensors": Path("/nonexistent/file")},
            manifest_for("acme", "support"),
            FileNotFoundError,
        ),
    ],
)
def test_failed_publish_leaves_nothing(tmp_path: Path, files: dict, make: Callable, error: type) -> None:
    store = AdapterStore(tmp_path)
    before = visible_tree(tmp_path)
    with pytest.raises(error):
        store.publish("acme", "support", files, make)
    assert visible_tree(tmp_path) == before
    assert store.list_adapters() == []


def test_failed_publish_keeps_the_current_version(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    publish(store)
    before = visible_tree(tmp_path)

    def explode(version: int) -> AdapterManifest:
        raise RuntimeError("trainer crashed")

    with pytest.raises(RuntimeError):
        store.publish("acme", "support", FILES, explode)
    assert visible_tree(tmp_path) == before
    assert store.current_version("acme", "support") == 1


@pytest.mark.parametrize(("tenant", "name"), [("..", "x"), ("acme", "../../etc"), ("acme", "a/b"), ("ACME", "x")])
def test_names_are_validated_before_touching_disk(tmp_path: Path, tenant: str, name: str) -> None:
    store = AdapterStore(tmp_path)
    before = visible_tree(tmp_path)
    with pytest.raises(InvalidId):
        store.publish(tenant, name, FILES, manifest_for("acme", "x"))
    with pytest.raises(InvalidId):
        store.resolve(AdapterRef(tenant, name))
    assert visible_tree(tmp_path) == before


def test_concurrent_publishes_from_threads_get_distinct_versions(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(publish(store).version)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))


def _publish_many(root: str, count: int) -> None:
    store = AdapterStore(Path(root))
    for _ in range(count):
        publish(store)


def test_concurrent_publishes_from_processes_get_distinct_versions(tmp_path: Path) -> None:
    # The trainer publishes from its own process; the flock must serialise it with the server.
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_publish_many, args=(str(tmp_path), 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = AdapterStore(tmp_path)
    assert [m.version for m in store.versions("acme", "support")] == list(range(1, 16))
    assert store.current_version("acme", "support") == 15


def test_sweep_removes_versions_no_publish_recorded(tmp_path: Path) -> None:
    """A publish killed between renaming its version into place and recording it leaves a complete
    but unannounced version; the sweep removes it (and an adapter whose first publish died so),
    keeps every recorded one, and leaves stores from before the bookkeeping alone."""
    store = AdapterStore(tmp_path)
    publish(store, "acme", "support")
    publish(store, "acme", "support")
    support = tmp_path / "acme" / "support"
    (support / "3").mkdir()  # renamed into place, never recorded
    (support / "3" / "adapter_model.safetensors").write_bytes(b"w")
    first = tmp_path / "acme" / "sales"
    (first / "1").mkdir(parents=True)  # a first publish that died before `current`
    legacy = tmp_path / "globex" / "old"
    (legacy / "7").mkdir(parents=True)
    (legacy / "current").write_text("7\n")  # no .last-version: nothing to compare with
    assert sorted(store.sweep()) == sorted([support / "3", first])
    assert [m.version for m in store.versions("acme", "support")] == [1, 2] and store.current_version(
        "acme", "support"
    ) == 2
    assert (legacy / "7").is_dir() and store.sweep() == []
    assert publish(store, "acme", "support").version == 3
