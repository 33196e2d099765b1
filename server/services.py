"""Everything a route needs, built once per app and kept on ``app.state.services``.

``base`` and ``admitter`` are None until the model has loaded (in the background, so ``/health``
answers at once and ``/ready`` tells when serving starts; ``admitter`` is set last); ``load_error``
says why loading failed, if it did. ``engine`` is the local engine, None in a cluster, where
``admitter`` sends requests to engine replicas and ``base`` holds the replicas' base's facts.
Routes reach it with :func:`services_of` (typed). It is also the
job runner's :class:`server.jobs.runner.ServingSide` (the model directory, the execution plan's
name, the engine's thread count), so the runner depends on that protocol, not on this bag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from adapters.base_model import ServedBase
from adapters.store import AdapterStore
from server.comparisons import ComparisonStore
from server.engine.admission import GenerationSource
from server.engine.grammar import GrammarCompiler
from server.engine.step_loop import Engine
from server.jobs.job_store import JobStore
from server.jobs.training_files import FileStore
from server.knowledge.dense_index import DenseIndex
from server.knowledge.embedder_threads import EmbedderThreads
from server.knowledge.knowledge_base import KnowledgeBase
from server.knowledge.passage_index import PassageIndex
from server.metrics import Metrics
from server.rollouts.feedback import FeedbackStore
from server.rollouts.served_log import ServedLog
from server.settings import Settings
from server.tenancy import quotas
from server.tenancy.rate_limits import RateLimiter
from server.tenancy.tenants import TenantRegistry

if TYPE_CHECKING:
    from server.jobs.runner import JobRunner


@dataclass
class Services:
    settings: Settings
    store: AdapterStore
    tenants: TenantRegistry
    metrics: Metrics
    comparisons: ComparisonStore
    files: FileStore
    jobs: JobStore
    served: ServedLog
    """Every chat completion served (which version answered, latencies; texts where stored)."""
    feedback: FeedbackStore
    knowledge: KnowledgeBase
    """Each tenant's passages and their vectors for retrieval (kept in step with its files)."""
    base: ServedBase | None = None
    engine: Engine | None = None
    admitter: GenerationSource | None = None
    grammars: GrammarCompiler | None = None
    """Compiles response formats and tool calls for the base's tokenizer (set with the engine)."""
    load_error: str | None = None
    limits: RateLimiter = field(default_factory=RateLimiter)
    """Per-tenant chat limits (in memory)."""
    model_dir: Path | None = None
    """The base model's directory once known (the job runner hands it to training workers)."""
    runner: JobRunner | None = None
    """Runs fine-tuning jobs; set while the app runs."""

    def usage(self, tenant: str) -> quotas.Usage:
        """What ``tenant`` stores now (see :mod:`server.tenancy.quotas`)."""
        derived = (self.settings.knowledge_dir, self.settings.knowledge_vectors_dir)
        return quotas.measure(
            self.store, self.files, self.jobs, self.comparisons, self.settings.jobs_dir, tenant, derived
        )

    def require_room(self, tenant: str, adding: quotas.Adding) -> None:
        """413/429 ``quota_exceeded`` when ``adding`` would pass one of ``tenant``'s quotas."""
        quotas.require_room(self.tenants.get_settings(tenant).effective_limits, self.usage(tenant), adding)

    @classmethod
    def on_disk(cls, settings: Settings, **fields: Any) -> Services:
        """Every store opened under ``settings.data``; ``fields`` set the rest (``base``, ...)."""
        services = cls(
            settings=settings,
            store=AdapterStore(settings.adapters_dir),
            tenants=TenantRegistry(settings.db_path),
            metrics=Metrics(),
            comparisons=ComparisonStore(settings.db_path),
            files=FileStore(settings.db_path, settings.files_dir),
            jobs=JobStore(settings.db_path),
            served=ServedLog(settings.db_path, settings.served_retention_days),
            feedback=FeedbackStore(settings.db_path),
            knowledge=KnowledgeBase(
                PassageIndex(settings.knowledge_dir),
                DenseIndex(settings.knowledge_vectors_dir),
                EmbedderThreads(settings.embedding_model_dir) if settings.embedding_model_dir else None,
                max_vectors=settings.retrieval_embed_max_passages,
                embed_timeout_s=settings.retrieval_embed_timeout_s,
            ),
            **fields,
        )
        knowledge = services.knowledge
        services.files.on_delete = lambda stored: knowledge.remove_file(stored.tenant, stored.id)
        return services

    @property
    def plan_name(self) -> str | None:
        """The execution plan the base serves with, once loaded."""
        return self.base.plan.name if self.base is not None else None

    def set_engine_threads(self, threads: int) -> None:
        """Re-size the engine's CPU threads (a no-op until it has loaded)."""
        if self.engine is not None:
            self.engine.set_threads(threads)


def services_of(request: Request) -> Services:
    """The app's services, typed."""
    services = request.app.state.services
    assert isinstance(services, Services)
    return services
