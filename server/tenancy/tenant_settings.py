"""A tenant's settings: branding, system prompt, widget origins, default model and limits.

Contract:

- :class:`TenantSettings` is the whole record; every field has a default, so a tenant that never
  changed anything has valid settings. It is validated in full on every change: a PATCH that
  would leave any field invalid changes nothing.
- ``brand_color`` is ``#rgb`` or ``#rrggbb``; ``logo_url`` an absolute http(s) URL;
  ``allowed_origins`` exact browser origins (``scheme://host[:port]``, no path, no wildcard),
  stored lower-case without a default port, the way browsers send the ``Origin`` header;
  ``system_prompt`` at most :data:`MAX_SYSTEM_PROMPT_CHARS` characters; ``default_model`` is
  ``base`` or an adapter id of the tenant itself (:func:`check_default_model`; that the adapter
  exists is the route's check, against the store).
- :class:`TenantLimits`: ``None`` means unlimited (the default). The server enforces
  requests/minute, tokens/day and concurrent requests (:mod:`server.tenancy.rate_limits`);
  ``concurrent_jobs`` is for the fine-tuning job runner; the disk quotas (``storage_bytes``,
  ``adapters``, ``adapter_versions``, ``files``, ``comparisons``) for :mod:`server.tenancy.quotas`.
- Limits are the operator's: ``limit_ceilings`` is set by the admin only (new tenants get the
  server's ``SWAPLORA_DEFAULT_LIMIT_CEILINGS``); ``limits`` is the tenant's own and may only be
  lower (:func:`check_limits`). What is enforced is :attr:`TenantSettings.effective_limits`, the
  lower of the two per field, so a tenant can never raise or clear a ceiling.
- :func:`merge_patch` applies a PATCH body: top-level fields replace, ``limits`` and
  ``limit_ceilings`` merge field by field, ``null`` resets a field to its default.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import ErrorDetails

from adapters.ids import InvalidId, parse_model_id
from server.errors import APIError, bad_request

MAX_SYSTEM_PROMPT_CHARS = 4000
MAX_GREETING_CHARS = 500
MAX_DISPLAY_NAME_CHARS = 100
MAX_URL_CHARS = 2048
MAX_ORIGINS = 50
DEFAULT_BRAND_COLOR = "#2563eb"
_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TenantLimits(_Record):
    """Per-tenant abuse limits; None is unlimited."""

    requests_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    """Chat requests admitted in any 60-second window."""
    tokens_per_day: int | None = Field(None, ge=1, le=10**12)
    """Prompt plus completion tokens per UTC day."""
    concurrent_requests: int | None = Field(None, ge=1, le=100_000)
    """Chat requests in flight at once."""
    concurrent_jobs: int | None = Field(None, ge=1, le=1000)
    """Fine-tuning jobs queued or running at once."""
    storage_bytes: int | None = Field(None, ge=1, le=10**15)
    """Disk for adapters (every version), training files and job logs (:mod:`server.tenancy.quotas`)."""
    adapters: int | None = Field(None, ge=1, le=1_000_000)
    """Adapter names."""
    adapter_versions: int | None = Field(None, ge=1, le=1_000_000)
    """Versions of all the tenant's adapters together."""
    files: int | None = Field(None, ge=1, le=1_000_000)
    """Training files."""
    comparisons: int | None = Field(None, ge=1, le=10**9)
    """Recorded A/B votes."""
    batch_rows: int | None = Field(None, ge=1, le=100_000)
    """Rows of the running batch the tenant's requests may hold at once (the rest wait their turn)."""


NO_LIMITS = TenantLimits()
"""Every field None: nothing limited."""


def _http_url(value: str, what: str) -> tuple[str, Any]:
    if len(value) > MAX_URL_CHARS or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be a URL without spaces, at most {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{what} has an invalid port") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{what} must start with https:// or http:// and name a host")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not contain a user name or password")
    return value, (parts, port)


def normalize_origin(value: str) -> str:
    """``value`` as browsers send it in ``Origin``; ValueError unless it is an exact origin."""
    _, (parts, port) = _http_url(value, f"origin {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith("?") or "*" in value:
        raise ValueError(f"origin {value!r} must be scheme://host[:port] only (no path, query or wildcard)")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


MAX_RETRIEVAL_FILES = 50
MAX_TOP_K = 8


class RetrievalSettings(_Record):
    """Answers grounded in the tenant's documents (:mod:`server.knowledge`)."""

    enabled: bool = False
    files: list[str] = Field(default_factory=list, max_length=MAX_RETRIEVAL_FILES)
    """The tenant's own uploaded files (``file-...``) whose passages chat may retrieve."""
    top_k: int = Field(4, ge=1, le=MAX_TOP_K)
    """Passages retrieved per request (fewer when they do not fit the context budget)."""
    show_citations: bool = False
    """The widget lists the passages an answer used under it."""

    @field_validator("files")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class TenantSettings(_Record):
    """Everything a tenant may change about itself."""

    display_name: str | None = Field(None, min_length=1, max_length=MAX_DISPLAY_NAME_CHARS)
    """The assistant's name in the widget; None shows the tenant id."""
    brand_color: str = DEFAULT_BRAND_COLOR
    """The widget's colour, ``#rgb`` or ``#rrggbb``."""
    logo_url: str | None = None
    """An http(s) image URL shown in the widget's header."""
    greeting: str | None = Field(None, max_length=MAX_GREETING_CHARS)
    """The widget's first message."""
    system_prompt: str | None = Field(None, max_length=MAX_SYSTEM_PROMPT_CHARS)
    """Applied when a chat request brings no system message (the trainer uses it too)."""
    allowed_origins: list[str] = Field(default_factory=list, max_length=MAX_ORIGINS)
    """Web origins whose pages may use the tenant's publishable keys."""
    default_model: str = "base"
    """The model publishable keys (the widget) chat with."""
    limits: TenantLimits = TenantLimits()
    """The tenant's own limits (at most the ceilings)."""
    limit_ceilings: TenantLimits = TenantLimits()
    """The operator's limits: only the admin changes them."""
    key_limits: TenantLimits = TenantLimits()
    """Chat limits (``requests_per_minute``, ``tokens_per_day``, ``concurrent_requests``) of each
    publishable key on its own, inside the tenant's."""
    visitor_limits: TenantLimits = TenantLimits()
    """The same, per page visitor (a publishable key and a client address); at most the server's
    ``SWAPLORA_VISITOR_LIMIT_CEILINGS``."""
    widget_max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    """Most completion tokens a publishable key may ask for; at most ``SWAPLORA_PUBLISHABLE_MAX_TOKENS``."""
    store_conversations: bool = False
    """Keep the texts of chats (messages and answers) and feedback comments, for review and for
    preference training; off: only ids, versions, latencies and ratings are kept."""
    retrieval: RetrievalSettings = RetrievalSettings()
    """Retrieval from the tenant's documents for every chat (see :mod:`server.knowledge`)."""

    @property
    def effective_limits(self) -> TenantLimits:
        """What the server enforces: per field the lower of ``limits`` and ``limit_ceilings``."""
        return lower_of(self.limits, self.limit_ceilings)

    @field_validator("brand_color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not _COLOR_RE.fullmatch(value):
            raise ValueError("brand_color must be a hex colour like '#1a2b3c' or '#abc'")
        return value.lower()

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "logo_url")[0]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_origin(origin) for origin in value))

    @field_validator("default_model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            parse_model_id(value)
        except InvalidId as exc:
            raise ValueError(str(exc)) from None
        return value

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a browser page at ``origin`` may use this tenant's publishable keys."""
        if not origin:
            return False
        return origin.lower() in self.allowed_origins


def lower_of(*all_limits: TenantLimits) -> TenantLimits:
    """Per field, the lowest limit any of ``all_limits`` sets (None where none sets one)."""
    dumps = [limits.model_dump() for limits in all_limits]
    return TenantLimits(
        **{
            field: min((d[field] for d in dumps if d[field] is not None), default=None)
            for field in TenantLimits.model_fields
        }
    )


def check_default_model(settings: TenantSettings, tenant_id: str) -> None:
    """A 400 unless ``default_model`` is ``base`` or one of ``tenant_id``'s own adapter ids."""
    ref = parse_model_id(settings.default_model)
    if ref is not None and ref.tenant != tenant_id:
        raise bad_request(
            f"default_model must be 'base' or one of this tenant's adapters ('{tenant_id}/<name>').",
            param="default_model",
            code="invalid_default_model",
        )


def check_limits(
    settings: TenantSettings,
    is_admin: bool,
    patch: dict[str, Any],
    visitor_ceilings: TenantLimits = NO_LIMITS,
    max_widget_tokens: int | None = None,
) -> None:
    """403 when a tenant touches ``limit_ceilings``; 400 when its own limits pass a ceiling: its
    ``limits`` the ``limit_ceilings``, its ``visitor_limits`` the server's ``visitor_ceilings``,
    its ``widget_max_tokens`` the server's ``max_widget_tokens``."""
    if "limit_ceilings" in patch and not is_admin:
        raise APIError(
            403,
            "Only the server's operator (the admin key) sets limit_ceilings.",
            code="admin_required",
            param="limit_ceilings",
        )
    for name, own, ceiling in (
        ("limits", settings.limits, settings.limit_ceilings),
        ("visitor_limits", settings.visitor_limits, visitor_ceilings),
    ):
        caps, values = ceiling.model_dump(), own.model_dump()
        for field, cap in caps.items():
            if cap is not None and values[field] is not None and values[field] > cap:
                raise bad_request(
                    f"{name}.{field} may be at most {cap}, the operator's ceiling.",
                    param=f"{name}.{field}",
                    code="invalid_setting",
                )
    wanted = settings.widget_max_tokens
    if wanted is not None and max_widget_tokens is not None and wanted > max_widget_tokens:
        raise bad_request(
            f"widget_max_tokens may be at most {max_widget_tokens}, the operator's ceiling.",
            param="widget_max_tokens",
            code="invalid_setting",
        )


LIMIT_FIELDS = ("limits", "limit_ceilings", "key_limits", "visitor_limits")
"""Settings that are :class:`TenantLimits`: a PATCH merges them field by field."""


def merge_patch(current: TenantSettings, patch: dict[str, Any]) -> dict[str, Any]:
    """The settings after ``patch`` as plain JSON data, to be validated whole by the caller."""
    merged = current.model_dump(mode="json")
    for field, value in patch.items():
        if (field in LIMIT_FIELDS or field == "retrieval") and isinstance(value, dict):
            merged[field] = {**merged[field], **value}  # an object's fields change one by one
        elif value is None and field in TenantSettings.model_fields:
            merged.pop(field)  # back to the default
        else:
            merged[field] = value
    return merged


def settings_error(exc: Exception) -> APIError:
    """A pydantic error on a settings change as a 400 that names the field."""
    errors: list[ErrorDetails] = getattr(exc, "errors", lambda: [])()
    if not errors:
        return bad_request(str(exc))
    first = errors[0]
    param = ".".join(str(part) for part in first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        return bad_request(f"Unknown setting {param!r}.", param=param)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
    return bad_request(f"Invalid value for '{param}': {message}.", param=param or None, code="invalid_setting")
