"""The one loader: NF4 with double quantization, a stable spec hash, safe loading only."""

from __future__ import annotations

import shutil
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch

from adapters.base_model import BaseModelError, load_base, load_tokenizer, model_fingerprint, spec_for
from adapters.execution_plan import ExecutionPlan


def test_loads_nf4_with_double_quantization(tiny_model_dir: Path) -> None:
    base = load_base(tiny_model_dir, plan=ExecutionPlan.from_name("nf4-bf16"))  # the packed form
    quantized = [m for m in base.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7  # every attention and MLP projection of both layers
    state = quantized[0].weight.quant_state
    assert state.quant_type == "nf4"
    assert state.nested  # double quantization: the absmax constants are quantized too
    assert quantized[0].compute_dtype == torch.bfloat16
    assert base.linear_shapes["model.layers.0.self_attn.q_proj"] == (64, 64)
    assert base.linear_shapes["model.layers.1.mlp.down_proj"] == (128, 64)
    assert "lm_head" not in base.linear_shapes
    assert base.context_length == 512 and base.eos_token_ids


def test_spec_hash_is_stable_and_tracks_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    first, second = spec_for(tiny_model_dir, tokenizer), spec_for(tiny_model_dir, tokenizer)
    assert first.hash == second.hash and len(first.hash) == 64
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert spec_for(copy, tokenizer).hash == first.hash  # identity is content, not location
    config = (copy / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')
    (copy / "config.json").write_text(config)
    assert model_fingerprint(copy) != first.model_fingerprint
    tokenizer.chat_template = tokenizer.chat_template + "{# changed #}"
    assert spec_for(tiny_model_dir, tokenizer).hash != first.hash


def test_refuses_pickle_only_checkpoints(tiny_model_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(BaseModelError, match="safetensors"):
        load_base(pickled)


def test_refuses_a_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="config.json"):
        model_fingerprint(tmp_path)
