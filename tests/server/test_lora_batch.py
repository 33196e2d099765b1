"""The batched LoRA layers against plain PEFT, one forward pass at a time (fp32 tiny Llama):
every mix of ranks, targeted modules, rsLoRA, base rows, uneven groups and multi-token rows gives
each row the logits PEFT gives it alone; stacks are reused while they cover the batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from adapters.execution_plan import ExecutionPlan
from server.engine.lora_batch import LoRABatch, inject
from server.engine.lora_stack import concat, input_group, load_lora
from tests.conftest import make_lora, python_bytes_growth

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch-loras")
    paths = {
        "r4": make_lora(tiny_model_dir, root / "r4", rank=4, seed=11),
        "r8qv": make_lora(tiny_model_dir, root / "r8qv", rank=8, seed=12, modules=["q_proj", "v_proj", "up_proj"]),
        "r16": make_lora(tiny_model_dir, root / "r16", rank=16, seed=13),
        "rs2": make_lora(tiny_model_dir, root / "rs2", rank=2, seed=14, modules=["k_proj", "o_proj", "down_proj"]),
    }
    config_path = paths["rs2"] / "adapter_config.json"  # rsLoRA: scale alpha / sqrt(r)
    config = json.loads(config_path.read_text())
    config["use_rslora"] = True
    config_path.write_text(json.dumps(config))
    return paths


def model(model_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def alone(model_dir: Path, adapter: Path | None, ids: torch.Tensor) -> torch.Tensor:
    reference = model(model_dir)
    if adapter is not None:
        reference = PeftModel.from_pretrained(reference, adapter).eval()
    with torch.inference_mode():
        return reference(input_ids=ids).logits


def served_model(model_dir: Path) -> tuple[torch.nn.Module, LoRABatch]:
    served = model(model_dir)
    batch = inject(
        served,
        {n: (0, 0) for n, m in served.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")},
    )
    return served, batch


def assert_rows_equal_peft(
    model_dir: Path,
    adapters: dict[str, Path],
    served: torch.nn.Module,
    batch: LoRABatch,
    rows: list[str | None],
    ready: dict,
) -> None:
    ids = torch.randint(0, 1000, (len(rows), 5), generator=torch.Generator().manual_seed(len(rows)))
    batch.set_adapters(rows, ready, CPU)
    with torch.inference_mode():
        logits = served(input_ids=ids).logits
    for i, key in enumerate(rows):
        expected = alone(model_dir, adapters[key] if key else None, ids[i : i + 1])
        torch.testing.assert_close(logits[i : i + 1], expected, rtol=1e-5, atol=1e-5, msg=f"{rows}: row {i} ({key})")


@pytest.mark.parametrize(
    "rows",
    [
        ["r4", "r8qv", "r16", "rs2"],  # one row per adapter
        ["r4", None, "r16", "r4", "r8qv", None, "r4"],  # base rows, uneven groups
        [None, "rs2"],
        ["r16", "r16", "r16"],  # one adapter: the direct path
    ],
)
def test_batched_rows_equal_peft_alone(tiny_model_dir: Path, adapters: dict[str, Path], rows) -> None:
    served, batch = served_model(tiny_model_dir)
    ready = {key: load_lora(path, torch.float32, CPU) for key, path in adapters.items()}
    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, rows, ready)  # 5 tokens a row, as in a prefill


def test_adapters_join_and_leave_slots_without_a_rebuild(tiny_model_dir: Path, adapters: dict[str, Path]) -> None:
    served, batch = served_model(tiny_model_dir)
    ready = {key: load_lora(path, torch.float32, CPU) for key, path in adapters.items()}
    group = "model.layers.0.self_attn.q_proj|k_proj|v_proj"

    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, ["r4", "r16"], ready)
    assert batch.slots.rebuilds == 1 and batch.slots.capacity == 2
    storage = batch.segments.stack.a[group].data_ptr()

    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, ["r16", None, "r4"], ready)  # same set
    assert batch.slots.rebuilds == 1 and batch.segments.stack.a[group].data_ptr() == storage

    batch.set_adapters(["r4"], ready, CPU)  # one adapter alone: used as loaded, slots untouched
    assert batch.segments.stack is ready["r4"] and batch.segments.direct and batch.slots.rebuilds == 1

    # A third adapter, with other ranks and targets, finds no free slot: rebuilt with room for 4.
    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, ["r4", "r8qv", "r16", None], ready)
    assert batch.slots.rebuilds == 2 and batch.slots.capacity == 4
    storage = batch.segments.stack.a[group].data_ptr()

    # r4 and r8qv leave, rs2 (rank 2, other targets) joins: copied into a freed slot, nothing rebuilt.
    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, ["rs2", "r16", "rs2"], ready)
    assert batch.slots.rebuilds == 2 and batch.segments.stack.a[group].data_ptr() == storage
    assert batch.segments.stack.size == 2  # the batch computes over the slots it uses, not the capacity

    # Back to a set in new slots (rs2's old slot reused again): still no rebuild, still exact.
    assert_rows_equal_peft(tiny_model_dir, adapters, served, batch, ["r8qv", "r4", None, "r16"], ready)
    assert batch.slots.rebuilds == 2


def test_ready_form_layout_and_padding(adapters: dict[str, Path]) -> None:
    r4 = load_lora(adapters["r4"], torch.float32, CPU)
    group, place = input_group("model.layers.1.self_attn.k_proj")
    assert group == "model.layers.1.self_attn.q_proj|k_proj|v_proj" and place == 1
    assert r4.layouts[group] == tuple((f"model.layers.1.self_attn.{p}", 4) for p in ("q_proj", "k_proj", "v_proj"))
    assert r4.a[group].shape == (1, 64, 12)
    mixed = concat([r4, load_lora(adapters["r8qv"], torch.float32, CPU)])
    # r8qv has no k_proj: its k block is zeros; q is padded to the larger rank.
    assert dict(mixed.layouts[group]) == {
        f"model.layers.1.self_attn.{p}": w for p, w in (("q_proj", 8), ("k_proj", 4), ("v_proj", 8))
    }
    _, _, start, stop = mixed.members["model.layers.1.self_attn.k_proj"]
    assert mixed.a[group][1, :, start:stop].abs().sum() == 0
    assert mixed.a[group][0, :, start:stop].abs().sum() > 0


@pytest.mark.parametrize("lora_dtype", [torch.float32, torch.bfloat16], ids=["fp32-cpu", "bf16-accelerator"])
def test_nf4_bf16_rows_stay_within_the_documented_tolerance(
    tiny_model_dir: Path, adapters: dict[str, Path], lora_dtype: torch.dtype
) -> None:
    """NF4 base, bf16 activations. On the CPU the delta is computed in fp32 and added to the bf16
    output once (PEFT rounds the delta to bf16 first); on an accelerator the engine keeps the LoRA
    weights in bf16 and computes the delta in bf16 (run here on the CPU: same arithmetic). Either
    way logits differ by bf16 rounding only: at most ``NF4_ATOL``, and the greedy token is the same."""
    from adapters.base_model import load_base

    served = load_base(tiny_model_dir, plan=NF4_BF16)
    batch = inject(served.model, served.linear_shapes)
    ready = {key: load_lora(path, lora_dtype, CPU) for key, path in adapters.items()}
    rows = ["r4", None, "r16", "r8qv"]
    ids = torch.randint(0, 1000, (len(rows), 6), generator=torch.Generator().manual_seed(1))
    batch.set_adapters(rows, ready, CPU)
    with torch.inference_mode():
        logits = served.model(input_ids=ids).logits.float()
    for i, key in enumerate(rows):
        reference = load_base(tiny_model_dir, plan=NF4_BF16).model
        if key:
            reference = PeftModel.from_pretrained(reference, adapters[key]).eval()
        with torch.inference_mode():
            expected = reference(input_ids=ids[i : i + 1]).logits.float()
        assert (logits[i : i + 1] - expected).abs().max() <= NF4_ATOL, key
        assert torch.equal(logits[i, -1].argmax(), expected[0, -1].argmax()), key


NF4_ATOL = 0.05
"""Largest logit difference accepted between the batched rows and PEFT on the NF4 base."""
NF4_BF16 = ExecutionPlan.from_name("nf4-bf16")


def test_rows_on_a_dense_fp32_base_are_peft_on_the_packed_nf4_base(
    tiny_model_dir: Path, adapters: dict[str, Path]
) -> None:
    """The CPU plan without fast bf16: NF4 weights dequantized once into fp32 layers. Every row of a
    mixed batch gets what PEFT computes on bitsandbytes' own packed NF4 layers in fp32."""
    from adapters.base_model import load_base

    served = load_base(tiny_model_dir, plan=ExecutionPlan.from_name("dense-fp32"))
    batch = inject(served.model, served.linear_shapes)
    ready = {key: load_lora(path, torch.float32, CPU) for key, path in adapters.items()}
    rows = ["r16", None, "rs2", "r8qv"]
    ids = torch.randint(0, 1000, (len(rows), 6), generator=torch.Generator().manual_seed(2))
    batch.set_adapters(rows, ready, CPU)
    with torch.inference_mode():
        logits = served.model(input_ids=ids).logits
    for i, key in enumerate(rows):
        reference = load_base(tiny_model_dir, plan=ExecutionPlan.from_name("nf4-fp32")).model
        if key:
            reference = PeftModel.from_pretrained(reference, adapters[key]).eval()
        with torch.inference_mode():
            expected = reference(input_ids=ids[i : i + 1]).logits
        torch.testing.assert_close(logits[i : i + 1], expected, rtol=1e-4, atol=1e-4)


def test_loading_an_adapter_again_and_again_holds_no_memory(adapters: dict[str, Path]) -> None:
    # safetensors 0.8.0's default mmap reader leaked ~56 bytes per tensor read: 400 loads of this
    # 28-tensor adapter held about 630 KB; a server loading adapters all day grew without bound.
    # Lazy caches elsewhere in the process can hold some 50 KB more; the bound sits between.
    growth = python_bytes_growth(lambda: load_lora(adapters["r16"], torch.float32, CPU), 400)
    assert growth < 200_000, f"{growth} bytes held after 400 loads"
