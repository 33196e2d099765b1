"""Everything a route needs, built once per app and kept on ``app.state.services``.

``base``, ``engine`` and ``scheduler`` are None until the model has loaded (in the background,
so ``/health`` answers at once and ``/ready`` tells when serving starts); ``load_error`` says
why loading failed, if it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.base_model import LoadedBase
from adapters.store import AdapterStore
from server.comparisons import ComparisonStore
from server.engine import Engine
from server.files import FileStore
from server.jobs import JobStore
from server.metrics import Metrics
from server.rate_limits import RateLimiter
from server.scheduler import Scheduler
from server.settings import Settings
from server.tenants import TenantRegistry

if TYPE_CHECKING:
    from server.job_runner import JobRunner


@dataclass
class Services:
    settings: Settings
    store: AdapterStore
    tenants: TenantRegistry
    metrics: Metrics
    comparisons: ComparisonStore
    files: FileStore
    jobs: JobStore
    base: LoadedBase | None = None
    engine: Engine | None = None
    scheduler: Scheduler | None = None
    load_error: str | None = None
    limits: RateLimiter = field(default_factory=RateLimiter)
    """Per-tenant chat limits (in memory)."""
    model_dir: Path | None = None
    """The base model's directory once known (the job runner hands it to training workers)."""
    runner: JobRunner | None = None
    """Runs fine-tuning jobs; set while the app runs."""
