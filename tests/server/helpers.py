"""What the server's route tests share: real services on a data directory, without a model.

:func:`real_services` builds the same :class:`server.services.Services` the app builds (every
store real, on ``settings.data``), with no base, engine or runner: routes that need the model
answer 503 after their own checks, as on a server still loading.
"""

from __future__ import annotations

from typing import Any

from adapters.store import AdapterStore
from server.comparisons import ComparisonStore
from server.jobs.training_files import FileStore
from server.jobs.job_store import JobStore
from server.metrics import Metrics
from server.services import Services
from server.settings import Settings
from server.tenancy.tenants import TenantRegistry

UNSET_NEWER_LIMITS = {"storage_bytes": None, "adapters": None, "adapter_versions": None, "files": None, "comparisons": None,
             "batch_rows": None}
"""The quota and batch-row fields of limits nobody set (an operator's JSON default of ceilings replaces the built-in
one whole: quotas it leaves out are unlimited)."""


def real_services(settings: Settings, **fields: Any) -> Services:
    """Every store real under ``settings.data``; ``fields`` set the rest (``base``, ``model_dir``...)."""
    return Services(
        settings=settings,
        store=AdapterStore(settings.adapters_dir),
        tenants=TenantRegistry(settings.db_path),
        metrics=Metrics(),
        comparisons=ComparisonStore(settings.db_path),
        files=FileStore(settings.db_path, settings.files_dir),
        jobs=JobStore(settings.db_path),
        **fields,
    )
