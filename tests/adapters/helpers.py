"""What the adapter tests share with each other and with the server's route tests.

Manifests and store publishes (:func:`make_manifest`, :func:`publish`, :func:`visible_tree`) and
real PEFT adapters saved from a tiny Llama (:func:`save_peft_adapter`, whose linear layers
:data:`TINY_LINEAR_SHAPES` lists), so route and validation tests exercise the exact files ``peft``
writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.manifest import AdapterManifest
from adapters.store import AdapterStore

if TYPE_CHECKING:  # torch is imported where a model is built: the fault tests' publisher never pays for it
    import torch

# --------------------------------------------------------------------------------- manifests and the store


def make_manifest(**overrides: Any) -> AdapterManifest:
    """A valid manifest; keyword arguments replace fields."""
    fields: dict[str, Any] = dict(
        tenant="acme",
        name="support",
        version=3,
        base_spec_hash="b" * 64,
        chat_template_hash="c" * 64,
        rank=8,
        alpha=16,
        target_modules=("v_proj", "q_proj"),
        weights_sha256="a" * 64,
        created_at="2025-01-02T03:04:05Z",
        source="upload",
    )
    fields.update(overrides)
    return AdapterManifest(**fields)


FILES = {"adapter_config.json": b'{"peft_type": "LORA"}', "adapter_model.safetensors": b"weights"}
"""The files :func:`publish` stores (the store does not look inside them)."""


def manifest_for(tenant: str, name: str, **extra: object) -> Callable[[int], AdapterManifest]:
    return lambda version: make_manifest(tenant=tenant, name=name, version=version, **extra)


def publish(store: AdapterStore, tenant: str = "acme", name: str = "support", **extra: object) -> AdapterManifest:
    return store.publish(tenant, name, FILES, manifest_for(tenant, name, **extra))


def visible_tree(root: Path) -> list[str]:
    """Every path under root, to prove a failed operation left nothing behind."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --------------------------------------------------------------------------------- real PEFT adapters

_LAYER_SHAPES = {
    "self_attn.q_proj": (64, 64),
    "self_attn.k_proj": (64, 32),
    "self_attn.v_proj": (64, 32),
    "self_attn.o_proj": (64, 64),
    "mlp.gate_proj": (64, 128),
    "mlp.up_proj": (64, 128),
    "mlp.down_proj": (128, 64),
}
TINY_LINEAR_SHAPES: dict[str, tuple[int, int]] = {
    f"model.layers.{i}.{suffix}": shape for i in range(2) for suffix, shape in _LAYER_SHAPES.items()
}
"""Hand-written (in, out) table of a 2-layer Llama: hidden 64, intermediate 128, 4 heads, 2 KV heads."""
ALL_SHORT_NAMES = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")


def tiny_llama(hidden_size: int = 64, intermediate_size: int = 128) -> torch.nn.Module:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    return LlamaForCausalLM(config)


def save_peft_adapter(
    directory: Path, *, hidden_size: int = 64, r: int = 4, target_modules: Any = "all-linear", **lora: Any
) -> Path:
    """Save a real PEFT LoRA (non-zero B, so it changes outputs) for a tiny Llama into ``directory``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=lora.pop("lora_alpha", 8), target_modules=target_modules, init_lora_weights=False, **lora
    )
    get_peft_model(tiny_llama(hidden_size), config).save_pretrained(str(directory))
    return directory
