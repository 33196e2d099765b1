"""The manifest stored as ``manifest.json`` beside every adapter version.

An :class:`AdapterManifest` says what an adapter version is (tenant, name, version), what it was
made for (the base spec hash and chat-template hash the server checks before serving it), its
LoRA shape (rank, alpha, target modules), a sha256 of its weights file, and where it came from
(an upload or a training job, with metrics and free-form extras such as hyperparameters).

Contract: a manifest is immutable and validated on construction; ``from_json(m.to_json()) == m``;
:meth:`AdapterManifest.read` raises :class:`ManifestError` (a ValueError) for a file that is not a
valid manifest, never a bare ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from adapters.ids import InvalidId, validate_adapter_name, validate_tenant_id

MANIFEST_FILE = "manifest.json"
SOURCES = ("upload", "training")
Source = Literal["upload", "training"]
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest (object or file) that breaks one of the rules above."""


def sha256_file(path: Path) -> str:
    """sha256 hex of a file's bytes (what :attr:`AdapterManifest.weights_sha256` records)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def utc_now_iso() -> str:
    """Now as ISO-8601 UTC with a ``Z`` suffix and second precision, the form manifests use."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AdapterManifest:
    """One immutable adapter version's identity, compatibility and provenance."""

    tenant: str
    """Owning tenant id."""
    name: str
    """Adapter name, unique inside the tenant."""
    version: int
    """Version number, from 1; never reused for the same tenant/name."""
    base_spec_hash: str
    """:attr:`adapters.base_model.BaseModelSpec.hash` of the base the adapter was made for."""
    chat_template_hash: str
    """sha256 of the chat template the adapter was trained with."""
    rank: int
    """LoRA rank ``r``."""
    alpha: float
    """LoRA ``lora_alpha``."""
    target_modules: tuple[str, ...]
    """Sorted short names of the adapted linear layers, e.g. ``("q_proj", "v_proj")``."""
    weights_sha256: str
    """sha256 hex of ``adapter_model.safetensors``."""
    created_at: str
    """ISO-8601 UTC time of publication."""
    source: Source
    """``"upload"`` or ``"training"``."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation figures (e.g. eval loss before/after); JSON values only."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping: hyperparameters, data hash, job id; JSON values only."""

    def __post_init__(self) -> None:
        try:
            validate_tenant_id(self.tenant)
            validate_adapter_name(self.name)
        except InvalidId as exc:
            raise ManifestError(str(exc)) from None
        # type() rather than isinstance(): True is an int but not a version number.
        if type(self.version) is not int or self.version < 1:
            raise ManifestError(f"version must be an integer >= 1, got {self.version!r}.")
        for key in ("base_spec_hash", "chat_template_hash", "created_at"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ManifestError(f"{key} must be a non-empty string.")
        if not isinstance(self.weights_sha256, str) or not _SHA256_RE.fullmatch(self.weights_sha256):
            raise ManifestError("weights_sha256 must be 64 lower-case hex digits.")
        if type(self.rank) is not int or self.rank < 1:
            raise ManifestError(f"rank must be an integer >= 1, got {self.rank!r}.")
        if type(self.alpha) not in (int, float) or not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ManifestError(f"alpha must be a finite number > 0, got {self.alpha!r}.")
        if self.source not in SOURCES:
            raise ManifestError(f"source must be one of {SOURCES}, got {self.source!r}.")
        modules = self.target_modules
        if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules):
            raise ManifestError("target_modules must be a sequence of non-empty strings.")
        # Normalised here so equal manifests compare equal whatever order the caller used.
        object.__setattr__(self, "target_modules", tuple(sorted(set(modules))))
        object.__setattr__(self, "alpha", float(self.alpha))
        for key in ("metrics", "extra"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise ManifestError(f"{key} must be a JSON object.")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ManifestError(f"{key} must hold JSON values only: {exc}") from None
            # A private deep copy: the caller's dict changing later must not change the manifest.
            object.__setattr__(self, key, copy.deepcopy(value))

    @property
    def adapter_id(self) -> str:
        """``tenant/name``: the id chat requests use for the current version."""
        return f"{self.tenant}/{self.name}"

    @property
    def model_id(self) -> str:
        """``tenant/name@version``: the id that pins this exact version."""
        return f"{self.adapter_id}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples, copies of the nested dicts)."""
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: object) -> AdapterManifest:
        """Build from :meth:`to_dict` output; unknown keys are refused (they signal a mix-up)."""
        if not isinstance(data, dict):
            raise ManifestError("A manifest must be a JSON object.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ManifestError(f"Unknown manifest fields: {', '.join(unknown)}.")
        required = {f.name for f in fields(cls) if f.name not in ("metrics", "extra")}
        missing = sorted(required - set(data))
        if missing:
            raise ManifestError(f"Missing manifest fields: {', '.join(missing)}.")
        modules = data["target_modules"]
        if not isinstance(modules, list):
            raise ManifestError("target_modules must be a list of strings.")
        return cls(**{**data, "target_modules": tuple(modules)})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> AdapterManifest:
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"Manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def write(self, path: Path) -> None:
        """Write to ``path`` and fsync it; the store makes it visible atomically."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def read(cls, path: Path) -> AdapterManifest:
        """Read a manifest file; OSError propagates, bad content raises :class:`ManifestError`."""
        return cls.from_json(Path(path).read_bytes())
