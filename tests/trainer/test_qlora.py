"""QLoRA on the tiny NF4 model: what is trainable, the loop, stop and budget, publish and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapters.base_model import load_base
from adapters.execution_plan import ExecutionPlan
from adapters.hyperparameters import parse
from adapters.store import AdapterStore
from trainer.documents import load_records
from trainer.evaluate import eval_loss, probe_recall
from trainer.objective import row_loss
from trainer.packing import pack
from trainer.publish import publish_adapter
from trainer.qlora import prepare_model, train
from trainer.samples import Probe, build_samples
from trainer.schedule import Schedule, learning_rate_at
from trainer.tokenize import encode

ROOT = Path(__file__).resolve().parents[2]
HP = parse(
    {"lora_rank": 4, "max_seq_tokens": 256, "gradient_accumulation_steps": 1, "n_epochs": 50, "learning_rate": 0.02}
)


@pytest.fixture(scope="module")
def samples():
    return build_samples(load_records(ROOT / "examples" / "handbook.md", "handbook.md"), None, seed=0)


def rows_for(prepared, samples, count: int = 3):
    return pack([encode(prepared.tokenizer, s.messages) for s in samples.train], 256, seed=0)[:count]


def test_prepare_wraps_every_linear_layer_of_the_nf4_base(tiny_model_dir: Path) -> None:
    import bitsandbytes as bnb

    prepared = prepare_model(tiny_model_dir, HP, device="cpu", plan=ExecutionPlan.from_name("nf4-bf16"))
    assert prepared.spec.hash == load_base(tiny_model_dir, "cpu").spec.hash  # the server's spec
    model = prepared.model
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)


def test_row_loss_is_transformers_loss_with_logits_only_where_labels_are(tiny_model_dir: Path, samples) -> None:
    prepared = prepare_model(tiny_model_dir, HP, device="cpu")
    for row in rows_for(prepared, samples):
        with torch.no_grad():
            full = prepared.model(
                input_ids=row.input_ids,
                position_ids=row.position_ids,
                labels=row.labels,
                attention_mask=row.attention_mask(prepared.device),
                use_cache=False,
            ).loss
            ours = row_loss(prepared, row)
        assert 0 < row.trained_tokens < row.input_ids.shape[1]  # the test means something: some tokens are cut
        assert float(ours) == pytest.approx(float(full), rel=1e-4)


def test_auto_rows_are_short_on_the_cpu_and_a_step_keeps_about_1024_tokens() -> None:
    hp = parse({})
    assert hp.row_tokens("cpu") == 256 and hp.row_tokens("cuda") == 2048
    assert hp.resolve(n_samples=240, rows=60, hidden_size=576, device_type="cpu").gradient_accumulation_steps == 4
    assert hp.resolve(n_samples=240, rows=8, hidden_size=4096, device_type="cuda").gradient_accumulation_steps == 1
    # Rows whose samples share a prompt hold more sample tokens than 256: fewer rows make a step.
    shared = hp.resolve(n_samples=240, rows=40, hidden_size=576, device_type="cpu", sample_tokens=40 * 370)
    assert shared.gradient_accumulation_steps == 3
    assert parse({"max_seq_tokens": 512}).row_tokens("cpu") == 512


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    rates = [learning_rate_at(s, 20, 4, 1e-3) for s in range(20)]
    assert rates[:5] == sorted(rates[:5]) and max(rates) == pytest.approx(1e-3)
    assert rates[4:] == sorted(rates[4:], reverse=True)
    assert learning_rate_at(20, 20, 4, 1e-3) == pytest.approx(0.0, abs=1e-12)


def test_the_schedule_replans_to_end_inside_the_time_budget() -> None:
    schedule = Schedule(planned=100, warmup=10, peak=1e-3, max_seconds=60.0, total=100)
    schedule.replan(10, 30.0)  # 3 s a step: 10 more steps fit in the 30 s left
    assert schedule.total == 20
    assert schedule.learning_rate(19) > 0 and schedule.learning_rate(20) == pytest.approx(0.0, abs=1e-12)
    schedule.replan(10, 1.0)  # fast steps: never beyond the original plan
    assert schedule.total == 100
    schedule.replan(10, 120.0)  # over budget: ends at the step just taken
    assert schedule.total == 10


def test_training_lowers_the_loss_and_reports_progress(tiny_model_dir: Path, samples) -> None:
    prepared = prepare_model(tiny_model_dir, HP, device="cpu")
    rows = rows_for(prepared, samples)
    before = eval_loss(prepared, rows)
    events: list[dict] = []
    result = train(prepared, rows, parse({**HP.to_dict(), "max_steps": 12}), seed=0, on_progress=events.append)
    assert result.steps == 12 and not result.stopped_early
    assert result.trained_tokens == 4 * sum(r.sample_tokens for r in rows)  # 12 steps over 3 rows: 4 epochs
    assert eval_loss(prepared, rows) < before - 0.05  # a random 2-layer model's loss barely moves
    # Gradients reached every LoRA, the first layer's too: backward went through the NF4 layers
    # (also after the evaluation above, which must not switch them to an inference-only kernel).
    untouched = [n for n, p in prepared.model.named_parameters() if "lora_B" in n and not p.abs().sum() > 0]
    assert untouched == []
    assert [e["step"] for e in events] == list(range(1, 13))
    assert events[-1]["total_steps"] == 12 and events[-1]["learning_rate"] < events[1]["learning_rate"]
    assert math.isfinite(result.final_loss) and all(e["tokens_per_second"] > 0 for e in events)


def test_should_stop_and_the_time_budget_end_training(tiny_model_dir: Path, samples) -> None:
    prepared = prepare_model(tiny_model_dir, HP, device="cpu")
    rows = rows_for(prepared, samples)
    steps: list[int] = []
    result = train(
        prepared, rows, HP, seed=0, on_progress=lambda e: steps.append(e["step"]), should_stop=lambda: len(steps) >= 2
    )
    assert result.stopped_early and result.steps == 2
    events: list[dict] = []
    budget = parse({**HP.to_dict(), "n_epochs": 1000, "max_seconds": 1})
    result = train(prepared, rows, budget, seed=0, on_progress=events.append)
    assert not result.stopped_early and result.steps < result.plan.total_steps
    assert events[-1]["total_steps"] == events[-1]["step"] == result.steps  # the plan shrank to fit


def test_publish_stores_the_trained_weights_and_resume_loads_them(
    tiny_model_dir: Path, samples, tmp_path: Path
) -> None:
    from peft import get_peft_model_state_dict

    prepared = prepare_model(tiny_model_dir, HP, device="cpu")
    train(prepared, rows_for(prepared, samples), parse({**HP.to_dict(), "max_steps": 2}), seed=0)
    store = AdapterStore(tmp_path)
    manifest = publish_adapter(
        prepared, store, "acme", "shop", metrics={"eval_loss_after": float("nan")}, extra={"job_id": "x"}
    )
    assert manifest.model_id == "acme/shop@1" and manifest.source == "training"
    assert manifest.base_spec_hash == prepared.spec.hash and manifest.rank == 4 and manifest.alpha == 8
    assert manifest.metrics == {"eval_loss_after": None}
    stored = store.resolve(manifest_ref(manifest))
    saved = load_file(stored.weights_path)
    trained = get_peft_model_state_dict(prepared.model)
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    assert any(t.abs().sum() > 0 for k, t in saved.items() if "lora_B" in k)  # B moved from its zero init

    resumed = prepare_model(tiny_model_dir, parse({"lora_rank": 8}), device="cpu", init_adapter=stored.path)
    again = get_peft_model_state_dict(resumed.model)
    assert again.keys() == saved.keys() and all(torch.equal(again[k], saved[k]) for k in saved)
    assert any(p.requires_grad for p in resumed.model.parameters())


def manifest_ref(manifest):
    from adapters.ids import AdapterRef

    return AdapterRef(manifest.tenant, manifest.name, manifest.version)


def test_bf16_lora_for_comparison(tiny_model_dir: Path) -> None:
    import bitsandbytes as bnb

    prepared = prepare_model(tiny_model_dir, HP, device="cpu", quantize=False)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in prepared.model.modules())
    assert prepared.spec.quantization == {}
    assert prepared.spec.hash != load_base(tiny_model_dir, "cpu").spec.hash


def test_probe_recall_asks_each_probe(tiny_model_dir: Path) -> None:
    from trainer.recall import answer_matches

    prepared = prepare_model(tiny_model_dir, HP, device="cpu")
    probes = [Probe("When was the shop founded?", ("2009",)), Probe("Who is the mechanic?", ("Tomasz",))]
    recall, details = probe_recall(prepared, probes, "You answer for Lumen Lane.", max_new_tokens=4)
    assert [d["question"] for d in details] == [p.question for p in probes]
    assert all(d["correct"] == answer_matches(d["answer"], d["expect"]) for d in details)
    assert recall == sum(d["correct"] for d in details) / 2
    assert math.isnan(probe_recall(prepared, [], None)[0])


def test_gradients_are_the_same_after_an_evaluation(tiny_model_dir: Path, samples) -> None:
    """bitsandbytes must not switch the NF4 layers to its inference-only CPU kernel on eval."""

    def gradients(evaluate_first: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        prepared = prepare_model(tiny_model_dir, HP, device="cpu", plan=ExecutionPlan.from_name("nf4-bf16"))
        (row,) = rows_for(prepared, samples, count=1)
        if evaluate_first:
            eval_loss(prepared, [row])
        prepared.model.train()
        out = prepared.model(input_ids=row.input_ids, position_ids=row.position_ids, labels=row.labels, use_cache=False)
        out.loss.backward()
        return {n: p.grad for n, p in prepared.model.named_parameters() if p.requires_grad and "lora_B" in n}

    plain, after_eval = gradients(False), gradients(True)
    assert all(torch.allclose(plain[n], after_eval[n], rtol=1e-3, atol=1e-7) for n in plain)
