"""Identifier syntax: tenants, adapter names and the ``model`` field of a chat request.

A tenant id and an adapter name are both ``[a-z0-9][a-z0-9-]{0,62}``: no dots, slashes or
upper case, so an id can never walk out of its directory and is the same on every filesystem.
A model id is ``base``, ``<tenant>/<name>`` (the current version) or ``<tenant>/<name>@<version>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BASE_MODEL_ID = "base"
_SLUG = r"[a-z0-9][a-z0-9-]{0,62}"
_SLUG_RE = re.compile(rf"^{_SLUG}$")
_MODEL_RE = re.compile(rf"^(?P<tenant>{_SLUG})/(?P<name>{_SLUG})(?:@(?P<version>[1-9][0-9]{{0,8}}))?$")


class InvalidId(ValueError):
    """An identifier that does not match the syntax above; the message says which rule."""


@dataclass(frozen=True)
class AdapterRef:
    """A reference to an adapter; ``version`` None means the adapter's current version."""

    tenant: str
    name: str
    version: int | None = None

    @property
    def adapter_id(self) -> str:
        """``tenant/name`` without a version."""
        return f"{self.tenant}/{self.name}"

    def __str__(self) -> str:
        return self.adapter_id if self.version is None else f"{self.adapter_id}@{self.version}"


def validate_slug(value: object, what: str) -> str:
    """Return ``value`` if it is a valid tenant id or adapter name, else raise :class:`InvalidId`."""
    if not isinstance(value, str) or not _SLUG_RE.fullmatch(value):
        raise InvalidId(
            f"Invalid {what} {value!r}: use 1-63 characters from a-z, 0-9 and '-', starting with a letter or digit."
        )
    return value


def validate_tenant_id(value: object) -> str:
    return validate_slug(value, "tenant id")


def validate_adapter_name(value: object) -> str:
    return validate_slug(value, "adapter name")


def parse_model_id(value: object) -> AdapterRef | None:
    """Parse a chat ``model`` field: None for ``base``, else an :class:`AdapterRef`."""
    if value == BASE_MODEL_ID:
        return None
    if not isinstance(value, str):
        raise InvalidId("'model' must be a string.")
    match = _MODEL_RE.fullmatch(value)
    if not match:
        raise InvalidId(f"Invalid model id {value!r}: use 'base', '<tenant>/<name>' or '<tenant>/<name>@<version>'.")
    version = match.group("version")
    return AdapterRef(match.group("tenant"), match.group("name"), int(version) if version else None)
