"""Everything a route needs, built once per app and kept on ``app.state.services``.

``base``, ``engine`` and ``scheduler`` are None until the model has loaded (in the background,
so ``/health`` answers at once and ``/ready`` tells when serving starts); ``load_error`` says
why loading failed, if it did.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base_model import LoadedBase
from adapters.store import AdapterStore
from server.comparisons import ComparisonStore
from server.engine import Engine
from server.metrics import Metrics
from server.scheduler import Scheduler
from server.settings import Settings
from server.tenants import TenantRegistry


@dataclass
class Services:
    settings: Settings
    store: AdapterStore
    tenants: TenantRegistry
    metrics: Metrics
    comparisons: ComparisonStore
    base: LoadedBase | None = None
    engine: Engine | None = None
    scheduler: Scheduler | None = None
    load_error: str | None = None
