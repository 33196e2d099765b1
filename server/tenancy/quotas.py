"""Per-tenant disk quotas: what a tenant stores, measured, and the refusal when it would pass a quota.

Contract:

- The quotas are fields of :class:`server.tenancy.tenant_settings.TenantLimits` (so they are the
  operator's ceilings that a tenant may only lower): ``storage_bytes`` (adapters, every version,
  plus training files plus job work directories and logs plus what retrieval derived from the
  files: their passage index and vectors), ``adapters`` (adapter names),
  ``adapter_versions`` (versions of all its adapters together), ``files`` (training files) and
  ``comparisons`` (recorded votes). None is unlimited.
- :func:`measure` is a tenant's :class:`Usage` now (``GET /v1/tenants/{id}`` shows it); the
  stores it reads are passed in (:class:`server.services.Services` joins them).
- :func:`require_room` raises before anything is stored: 413 ``quota_exceeded`` when the bytes
  would pass ``storage_bytes``, 429 ``quota_exceeded`` when a count would pass its quota; the
  message says what is used, what the quota is and what to delete. Checked when the work is
  about to be committed; two uploads racing each other may pass a quota by one each. An upload is
  checked with its own bytes; what retrieval derives from it (an index entry and 768 bytes of
  vector per passage: about 2 KB a passage, several times a small file's own bytes) counts from
  then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from adapters.ids import InvalidId
from adapters.store import AdapterNotFound, AdapterStore
from server.errors import APIError
from server.tenancy.tenant_settings import TenantLimits

QUOTA_EXCEEDED = "quota_exceeded"


@dataclass(frozen=True)
class Usage:
    """Amounts of what a tenant stores: what it stores now, or (as :data:`Adding`) what a request
    is about to store."""

    storage_bytes: int = 0
    adapters: int = 0
    adapter_versions: int = 0
    files: int = 0
    comparisons: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


Adding = Usage
"""What a request is about to store (the same amounts)."""


_WHAT = {
    "adapters": ("adapters", "delete an adapter"),
    "adapter_versions": ("adapter versions", "delete old versions"),
    "files": ("training files", "delete files it no longer needs (DELETE /v1/files/{id})"),
    "comparisons": ("comparisons", "ask the operator to raise the quota"),
}


class FileUsage(Protocol):
    def usage(self, tenant: str) -> tuple[int, int]: ...


class JobIds(Protocol):
    def ids_of(self, tenant: str) -> list[str]: ...


class VoteCount(Protocol):
    def count(self, tenant: str) -> int: ...


def measure(
    store: AdapterStore,
    files: FileUsage,
    jobs: JobIds,
    comparisons: VoteCount,
    jobs_dir: Path,
    tenant: str,
    derived_roots: Sequence[Path] = (),
) -> Usage:
    """``tenant``'s usage: adapters and versions from the store, files and votes from the database,
    job work directories (under ``jobs_dir``) and what was derived from its files
    (``<root>/<tenant>`` of each of ``derived_roots``: the knowledge index and vectors) from the disk."""
    adapter_count, versions, adapter_bytes = _adapters(store, tenant)
    file_count, file_bytes = files.usage(tenant)
    job_bytes = sum(_tree_bytes(jobs_dir / job_id) for job_id in jobs.ids_of(tenant))
    derived_bytes = sum(_tree_bytes(root / tenant) for root in derived_roots)
    return Usage(
        storage_bytes=adapter_bytes + file_bytes + job_bytes + derived_bytes,
        adapters=adapter_count,
        adapter_versions=versions,
        files=file_count,
        comparisons=comparisons.count(tenant),
    )


def require_room(limits: TenantLimits, usage: Usage, adding: Adding) -> None:
    """413/429 ``quota_exceeded`` when ``usage`` plus ``adding`` passes one of ``limits``' quotas."""
    quota = limits.storage_bytes
    if quota is not None and adding.storage_bytes and usage.storage_bytes + adding.storage_bytes > quota:
        raise APIError(
            413,
            f"This would store {_size(usage.storage_bytes + adding.storage_bytes)} of the "
            f"tenant's {_size(quota)} storage quota ({_size(usage.storage_bytes)} used); delete "
            "adapters, versions or files first.",
            code=QUOTA_EXCEEDED,
        )
    for field, (noun, remedy) in _WHAT.items():
        cap, used, more = getattr(limits, field), getattr(usage, field), getattr(adding, field)
        if cap is not None and more and used + more > cap:
            raise APIError(
                429, f"The tenant has {used} of its {cap} {noun} (its quota); {remedy} first.", code=QUOTA_EXCEEDED
            )


def for_adapter_version(store: AdapterStore, tenant: str, name: str, size: int) -> Adding:
    """What publishing one more version of ``tenant/name`` (``size`` bytes) adds."""
    try:
        store.current_version(tenant, name)
        is_new = False
    except AdapterNotFound:
        is_new = True
    return Adding(storage_bytes=size, adapters=int(is_new), adapter_versions=1)


def room_left(limits: TenantLimits, usage: Usage) -> int | None:
    """Bytes the tenant may still store (None: no storage quota), for capping an upload as it streams in."""
    if limits.storage_bytes is None:
        return None
    return max(0, limits.storage_bytes - usage.storage_bytes)


def _adapters(store: AdapterStore, tenant: str) -> tuple[int, int, int]:
    try:
        summaries = store.list_adapters(tenant)
    except (InvalidId, AdapterNotFound):
        return 0, 0, 0
    versions = sum(len(summary.versions) for summary in summaries)
    return len(summaries), versions, _tree_bytes(store.root / tenant)


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when it is not a directory)."""
    return _tree_bytes(path)


def _tree_bytes(path: Path) -> int:
    if not path.is_dir():
        return 0
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
        except OSError:  # removed while walking
            continue
    return total


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
