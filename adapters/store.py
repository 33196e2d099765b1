"""The on-disk adapter store: ``<root>/<tenant>/<name>/<version>/``, atomic publish, rollback.

Layout::

    <root>/.lock                               flock held by every mutation (server and trainer)
    <root>/<tenant>/.last-version.<name>       highest version ever published (never reused)
    <root>/<tenant>/<name>/current             the current version number
    <root>/<tenant>/<name>/traffic.json        an optional split of traffic over versions
    <root>/<tenant>/<name>/<version>/          adapter_config.json, adapter_model.safetensors,
                                               manifest.json — immutable once visible

Contract:

- A version directory appears complete or not at all: :meth:`AdapterStore.publish` writes into
  a dot-prefixed temp directory, fsyncs, renames it into place and only then points ``current``
  at it (``os.replace``). On any failure the temp directory is removed and nothing is visible.
- Deletion renames into a dot-prefixed trash directory before removing it, so a reader never
  sees half a directory. Dot-entries are ignored by every read.
- Version numbers are never reused for a tenant/name, even after deletion, so a cached
  ``tenant/name@N`` can never silently refer to different weights.
- An adapter exists exactly when its ``current`` file names an existing version.
- A traffic split (:mod:`adapters.traffic_split`) only ever names existing versions: rolling
  back, or deleting a version the split names, removes the split (``current`` answers again).
- Names are validated with :mod:`adapters.ids` before they become paths (:class:`InvalidId`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.ids import AdapterRef, InvalidId, validate_adapter_name, validate_tenant_id
from adapters.manifest import MANIFEST_FILE, AdapterManifest, ManifestError
from adapters.store_files import fsync_dir, is_atomic_tmp, remove_dir, remove_if_empty, write_atomic, write_file
from adapters.traffic_split import TrafficSplit

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_CURRENT = "current"
_TRAFFIC = "traffic.json"
_RESERVED = frozenset({MANIFEST_FILE, _CURRENT, _TRAFFIC})


class StoreError(RuntimeError):
    """The store could not do what was asked (bad publish input, I/O failure)."""


class AdapterNotFound(KeyError):
    """No such tenant/name (or version). Its message is safe to show the adapter's owner."""

    @classmethod
    def adapter(cls, tenant: str, name: str) -> AdapterNotFound:
        return cls(f"Adapter '{tenant}/{name}' not found.")

    @classmethod
    def version(cls, tenant: str, name: str, version: object) -> AdapterNotFound:
        return cls(f"Version {version} of adapter '{tenant}/{name}' not found.")

    def __str__(self) -> str:
        # KeyError's default str() adds quotes around the message.
        return str(self.args[0]) if self.args else "Adapter not found."


@dataclass(frozen=True)
class AdapterSummary:
    """One adapter in a listing."""

    tenant: str
    name: str
    current_version: int
    versions: tuple[int, ...]
    """Every stored version, ascending."""

    @property
    def adapter_id(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class ResolvedAdapter:
    """A concrete adapter version: its manifest and the directory holding its files."""

    manifest: AdapterManifest
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE


class AdapterStore:
    """Adapters on disk; safe across threads and processes that share ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".lock").touch(exist_ok=True)
        self._thread_lock = threading.Lock()

    # ----------------------------------------------------------------------------- reads

    def list_adapters(self, tenant: str | None = None) -> list[AdapterSummary]:
        """Every adapter (of ``tenant``, or of all tenants), sorted by tenant then name."""
        tenants = [validate_tenant_id(tenant)] if tenant is not None else _entries(self.root)
        summaries = []
        for t in tenants:
            for name in _entries(self.root / t):
                try:
                    current = self.current_version(t, name)
                except (AdapterNotFound, InvalidId):
                    continue  # deleted while listing, a publish that never completed, or a stray dir
                summaries.append(AdapterSummary(t, name, current, tuple(self._versions(t, name))))
        return summaries

    def current_version(self, tenant: str, name: str) -> int:
        path = self._adapter_dir(tenant, name) / _CURRENT
        try:
            version = int(path.read_text().strip())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise AdapterNotFound.adapter(tenant, name) from None
        if not (path.parent / str(version)).is_dir():
            raise AdapterNotFound.adapter(tenant, name)
        return version

    def versions(self, tenant: str, name: str) -> list[AdapterManifest]:
        """Manifests of every stored version, ascending."""
        self.current_version(tenant, name)  # raises for an adapter that does not exist
        return [self.manifest(tenant, name, v) for v in self._versions(tenant, name)]

    def manifest(self, tenant: str, name: str, version: int) -> AdapterManifest:
        path = self._version_dir(tenant, name, version) / MANIFEST_FILE
        try:
            return AdapterManifest.read(path)
        except (FileNotFoundError, NotADirectoryError):
            raise AdapterNotFound.version(tenant, name, version) from None
        except ManifestError as exc:
            raise StoreError(f"Corrupt manifest {path}: {exc}") from exc

    def traffic(self, tenant: str, name: str) -> TrafficSplit | None:
        """The adapter's traffic split, if one is set."""
        path = self._adapter_dir(tenant, name) / _TRAFFIC  # InvalidId for bad names, as every read
        try:
            return TrafficSplit.from_json(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"Corrupt traffic split of {tenant}/{name}: {exc}") from exc

    def resolve(self, ref: AdapterRef, conversation: str | None = None) -> ResolvedAdapter:
        """The version ``ref`` names; ``ref.version`` None means the one the traffic split picks
        for ``conversation`` (:meth:`TrafficSplit.choose`), or the current one without a split."""
        split = self.traffic(ref.tenant, ref.name) if ref.version is None else None
        if split is not None:
            version = split.choose(f"{ref.tenant}/{ref.name}", conversation)
        else:
            version = ref.version if ref.version is not None else self.current_version(ref.tenant, ref.name)
        manifest = self.manifest(ref.tenant, ref.name, version)
        return ResolvedAdapter(manifest, self._version_dir(ref.tenant, ref.name, version))

    # ----------------------------------------------------------------------------- mutations

    def sweep(self) -> list[Path]:
        """Remove what a crash left behind: half-written versions (``.tmp-*``), directories on
        their way out (``.trash-*``), half-written bookkeeping files, and versions a publish
        renamed into place but never recorded (it died before writing ``.last-version``; an
        adapter whose first publish died that way has no ``current`` and goes whole); returns
        what went.

        Publishing and deleting hold the store's lock from the first byte to the last rename, so
        under the same lock anything temporary belongs to a process that died mid-way: this is
        safe while the server runs (the job runner sweeps after a training worker died).
        """
        removed: list[Path] = []
        with self._locked():
            for tenant_dir in (p for p in self.root.iterdir() if p.is_dir()):
                for adapter_dir in [d for d in tenant_dir.iterdir() if d.is_dir() and _is_valid_name(d.name)]:
                    removed += _sweep_unrecorded(adapter_dir, tenant_dir / f".last-version.{adapter_dir.name}")
                for entry in [
                    *tenant_dir.iterdir(),
                    *(
                        e
                        for d in tenant_dir.iterdir()
                        if d.is_dir() and not d.name.startswith(".")
                        for e in d.iterdir()
                    ),
                ]:
                    if entry.name.startswith((".tmp-", ".trash-")) or is_atomic_tmp(entry):
                        if entry.is_dir():
                            shutil.rmtree(entry, ignore_errors=True)
                        else:
                            entry.unlink(missing_ok=True)
                        removed.append(entry)
        return removed

    def publish(
        self,
        tenant: str,
        name: str,
        files: Mapping[str, Path | bytes],
        make_manifest: Callable[[int], AdapterManifest],
    ) -> AdapterManifest:
        """Store ``files`` as the next version, make it current and return its manifest.

        ``files`` maps a plain file name to its content or to a file to copy; it must include
        the adapter config and weights. ``make_manifest(version)`` builds the manifest once the
        version number is known.
        """
        adapter_dir = self._adapter_dir(tenant, name)
        _check_file_names(files)
        with self._locked():
            adapter_dir.mkdir(parents=True, exist_ok=True)
            version = max([self._last_version(tenant, name), *self._versions(tenant, name)], default=0) + 1
            tmp = adapter_dir / f".tmp-{uuid.uuid4().hex}"
            final = adapter_dir / str(version)
            try:
                tmp.mkdir()
                for file_name, content in files.items():
                    write_file(tmp / file_name, content)
                manifest = make_manifest(version)
                if (manifest.tenant, manifest.name, manifest.version) != (tenant, name, version):
                    raise StoreError(f"make_manifest returned {manifest.model_id}, expected {tenant}/{name}@{version}.")
                manifest.write(tmp / MANIFEST_FILE)
                fsync_dir(tmp)
                os.rename(tmp, final)
                fsync_dir(adapter_dir)
                try:
                    self._write_last_version(tenant, name, version)
                    write_atomic(adapter_dir / _CURRENT, f"{version}\n")
                except BaseException:
                    remove_dir(final)
                    raise
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (adapter_dir / _CURRENT).exists():
                    remove_if_empty(adapter_dir)
                    remove_if_empty(adapter_dir.parent)
                raise
            return manifest

    def rollback(self, tenant: str, name: str, version: int) -> AdapterManifest:
        """Make an existing ``version`` (older or newer) current, ending any split; return its manifest."""
        with self._locked():
            self.current_version(tenant, name)
            manifest = self.manifest(tenant, name, version)
            write_atomic(self._adapter_dir(tenant, name) / _CURRENT, f"{version}\n")
            (self._adapter_dir(tenant, name) / _TRAFFIC).unlink(missing_ok=True)
            return manifest

    def set_traffic(self, tenant: str, name: str, split: TrafficSplit | None) -> None:
        """Split traffic over existing versions; one version at 100 % is a promotion (it becomes
        current, the split ends); None ends a split (``current`` answers)."""
        if split is not None and split.only is not None:
            self.rollback(tenant, name, split.only)
            return
        with self._locked():
            self.current_version(tenant, name)
            path = self._adapter_dir(tenant, name) / _TRAFFIC
            if split is None:
                path.unlink(missing_ok=True)
                return
            for version in split.versions:
                self.manifest(tenant, name, version)  # AdapterNotFound for a missing version
            write_atomic(path, split.to_json())

    def delete(self, tenant: str, name: str, version: int | None = None) -> None:
        """Delete one version or (``version`` None) the whole adapter.

        Deleting the current version moves ``current`` to the newest remaining one; deleting
        the only version deletes the adapter.
        """
        adapter_dir = self._adapter_dir(tenant, name)
        with self._locked():
            current = self.current_version(tenant, name)
            stored = self._versions(tenant, name)
            if version is not None and version not in stored:
                raise AdapterNotFound.version(tenant, name, version)
            remaining = [v for v in stored if v != version]
            if version is None or not remaining:
                remove_dir(adapter_dir)
                return
            if version == current:
                write_atomic(adapter_dir / _CURRENT, f"{max(remaining)}\n")
            split = self.traffic(tenant, name)
            if split is not None and version in split.versions:
                (adapter_dir / _TRAFFIC).unlink()
            remove_dir(self._version_dir(tenant, name, version))

    # ----------------------------------------------------------------------------- internals

    def _adapter_dir(self, tenant: str, name: str) -> Path:
        return self.root / validate_tenant_id(tenant) / validate_adapter_name(name)

    def _version_dir(self, tenant: str, name: str, version: int) -> Path:
        if type(version) is not int or version < 1:
            raise AdapterNotFound.version(tenant, name, version)
        return self._adapter_dir(tenant, name) / str(version)

    def _versions(self, tenant: str, name: str) -> list[int]:
        return sorted(int(e) for e in _entries(self._adapter_dir(tenant, name)) if _is_version(e))

    def _last_version_path(self, tenant: str, name: str) -> Path:
        return self.root / validate_tenant_id(tenant) / f".last-version.{validate_adapter_name(name)}"

    def _last_version(self, tenant: str, name: str) -> int:
        try:
            return int(self._last_version_path(tenant, name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return 0

    def _write_last_version(self, tenant: str, name: str, version: int) -> None:
        write_atomic(self._last_version_path(tenant, name), f"{version}\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise mutations among this process's threads and with other processes."""
        with self._thread_lock, open(self.root / ".lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _is_valid_name(name: str) -> bool:
    try:
        validate_adapter_name(name)
    except InvalidId:
        return False
    return True


def _sweep_unrecorded(adapter_dir: Path, last_version_file: Path) -> list[Path]:
    """Version directories of ``adapter_dir`` that no finished publish recorded (see sweep)."""
    if not (adapter_dir / _CURRENT).exists():
        if any(_is_version(e.name) for e in adapter_dir.iterdir()):
            shutil.rmtree(adapter_dir, ignore_errors=True)
            return [adapter_dir]
        return []
    try:
        last = int(last_version_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return []  # a store from before .last-version: nothing to compare with
    unrecorded = [e for e in adapter_dir.iterdir() if _is_version(e.name) and int(e.name) > last]
    for entry in unrecorded:
        shutil.rmtree(entry, ignore_errors=True)
    return unrecorded


def _entries(directory: Path) -> list[str]:
    """Sorted names in ``directory`` that are not dot-entries (temp, trash, lock, bookkeeping)."""
    try:
        return sorted(e.name for e in os.scandir(directory) if not e.name.startswith(".") and e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_version(entry: str) -> bool:
    return entry.isdigit() and entry.isascii() and not entry.startswith("0")


def _check_file_names(files: Mapping[str, Path | bytes]) -> None:
    missing = {CONFIG_FILE, WEIGHTS_FILE} - set(files)
    if missing:
        raise StoreError(f"publish needs {', '.join(sorted(missing))}.")
    for file_name in files:
        if file_name in _RESERVED or file_name.startswith(".") or Path(file_name).name != file_name:
            raise StoreError(f"Cannot store a file named {file_name!r}.")
