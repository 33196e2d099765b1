"""The base model and its engine in this process: what the server runs alone, and what each engine
replica of a cluster runs (:mod:`server.cluster.replica`).

Contract: :func:`start_local_engine` loads ``model_dir`` in NF4 in the plan the settings ask for
(measured and cached under the data directory), starts an :class:`~server.engine.step_loop.Engine`
sized by the settings and builds the :class:`~server.engine.grammar.GrammarCompiler` for its
tokenizer, warmed so no first request pays for it. The caller stops the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.base_model import LoadedBase, load_base
from server.engine.admission import Admitter
from server.engine.grammar import GrammarCompiler
from server.engine.step_loop import Engine
from server.metrics import Metrics
from server.settings import Settings


@dataclass
class LocalEngine:
    base: LoadedBase
    engine: Engine
    grammars: GrammarCompiler
    admitter: Admitter


def start_local_engine(settings: Settings, model_dir: Path, metrics: Metrics, threads: int | None) -> LocalEngine:
    """Load the base, start its engine (``threads`` torch threads; None: torch's default)."""
    base = load_base(
        model_dir, settings.device, request=settings.plan_request, plan_cache=settings.data, threads=threads
    )
    engine = Engine(
        base,
        max_batch_size=settings.max_batch_size,
        adapter_cache_bytes=settings.adapter_cache_mb * 1024 * 1024,
        adapter_host_cache_bytes=settings.adapter_host_cache_mb * 1024 * 1024,
        prefix_cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
        prefix_block_tokens=settings.prefix_block_tokens,
        threads=threads,
        metrics=metrics,
    )
    engine.start()
    grammars = GrammarCompiler(base.tokenizer, base.eos_token_ids, settings.max_grammar_bytes)
    grammars.token_bytes(0)  # builds its view of the vocabulary now (~0.3 s), not on a first request
    admitter = Admitter(engine, metrics, settings.max_waiting, settings.max_waiting_per_tenant)
    return LocalEngine(base, engine, grammars, admitter)
