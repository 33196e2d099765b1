"""DPO on the tiny NF4 model: the loss against hand-computed values, the packed pair rows' log-probs
against each sample run alone, the reference as the model the job starts from, and the job's
protocol (events, metrics, publish, continuing, refusals, cancel) as the worker runs it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters.execution_plan import ExecutionPlan
from adapters.hyperparameters import parse
from adapters.ids import AdapterRef
from adapters.store import AdapterStore
from trainer.documents import load_pairs
from trainer.dpo import answer_lengths, dpo_loss, evaluate_pairs, objective, sequence_logps, with_reference
from trainer.job import JobError, JobSpec, run_job
from trainer.preference_rows import encode_pair, pair_rows
from trainer.qlora import prepare_model, train
from trainer.tokenize import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples" / "preferences" / "sign-off.jsonl"
SYSTEM = "You answer for Lumen Lane Bicycles."


def test_the_loss_is_the_papers_formula_on_fixed_numbers() -> None:
    policy_c, policy_r = torch.tensor([-10.0, -3.0, -7.5]), torch.tensor([-12.0, -2.0, -7.5])
    ref_c, ref_r = torch.tensor([-11.0, -3.5, -6.0]), torch.tensor([-11.0, -2.5, -9.0])
    losses, margins = dpo_loss(policy_c, policy_r, ref_c, ref_r, beta=0.5)
    # (pi_c - ref_c) - (pi_r - ref_r): (1 - (-1)) = 2, (0.5 - 0.5) = 0, (-1.5 - 1.5) = -3; times beta
    assert margins.tolist() == pytest.approx([1.0, 0.0, -1.5])
    expected = [math.log1p(math.exp(-m)) for m in (1.0, 0.0, -1.5)]  # -log sigmoid(m)
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)
    assert expected[1] == pytest.approx(math.log(2))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Any:
    return prepare_model(
        tiny_model_dir, parse({"lora_rank": 4}), device="cpu", plan=ExecutionPlan.from_name("nf4-bf16")
    )


def alone_logps(prepared: Any, ids: list[int], labels: list[int]) -> float:
    """A sample's summed answer log-probability from a plain forward pass over it alone."""
    with torch.no_grad():
        logits = prepared.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    logps = logits.log_softmax(-1)
    return sum(float(logps[i - 1, ids[i]]) for i in range(1, len(ids)) if labels[i] != IGNORE_INDEX)


def test_packed_pair_rows_score_each_answer_as_if_alone(tiny: Any) -> None:
    pairs = load_pairs(PAIRS, PAIRS.name)[:7]
    rows = pair_rows(tiny.tokenizer, pairs, SYSTEM, 160, 2048, seed=3)
    assert len(rows) > 1 and sum(r.pairs for r in rows) == 7  # several pairs per row, none split
    expected = {}
    for pair in pairs:
        for sample in encode_pair(tiny.tokenizer, pair, SYSTEM):
            expected[tuple(sample.input_ids)] = (alone_logps(tiny, sample.input_ids, sample.labels), sample)
    tiny.model.eval()
    for row in rows:
        with torch.no_grad():
            packed = sequence_logps(tiny, row)
        ids = row.input_ids[0].tolist()
        prefix = ids[: int((row.owners == -1).sum())]
        for index in range(row.samples):
            suffix = [t for t, owner in zip(ids, row.owners.tolist(), strict=True) if owner == index]
            logps, sample = expected[tuple(prefix + suffix)]
            assert float(packed[index]) == pytest.approx(logps, rel=1e-5)
            assert float(answer_lengths(row)[index]) == sum(label != IGNORE_INDEX for label in sample.labels[1:])


def test_at_the_start_the_policy_is_its_reference(tiny: Any) -> None:
    pairs = load_pairs(PAIRS, PAIRS.name)[:4]
    rows = with_reference(tiny, pair_rows(tiny.tokenizer, pairs, SYSTEM, 256, 2048, seed=0))
    start = evaluate_pairs(tiny, rows, beta=0.1)
    assert (start.loss, start.accuracy, start.margin, start.pairs) == pytest.approx(
        (math.log(2), 0.0, 0.0, 4), abs=1e-5
    )
    tiny.model.train()
    row = rows[0]
    with torch.no_grad():
        chosen = sequence_logps(tiny, row).view(-1, 2)[:, 0]
    nll = -(chosen / answer_lengths(row).view(-1, 2)[:, 0])
    assert objective(0.1).loss(tiny, row).item() == pytest.approx(math.log(2), abs=1e-4)
    assert objective(0.1, sft_weight=0.5).loss(tiny, row).item() == pytest.approx(
        math.log(2) + 0.5 * float(nll.mean()), rel=1e-4
    )
    tiny.model.eval()


def test_dpo_steps_raise_the_preferred_answers_over_the_reference(tiny_model_dir: Path) -> None:
    """The in-every-run check that DPO learns in the right direction (the slow sign-off test in
    test_dpo_sign_off.py measures how well): the training loop of a DPO job, on four pairs, lifts
    every preferred answer above its rejected one relative to the reference, and the loss falls
    below log 2."""
    hp = parse({"lora_rank": 4, "n_epochs": 8, "learning_rate": 1e-2})
    prepared = prepare_model(tiny_model_dir, hp, device="cpu", plan=ExecutionPlan.from_name("dense-fp32"))
    pairs = load_pairs(PAIRS, PAIRS.name)[:4]
    rows = with_reference(prepared, pair_rows(prepared.tokenizer, pairs, SYSTEM, 256, 2048, seed=0))
    train(prepared, list(rows), hp, seed=0, objective=objective(0.1))
    after = evaluate_pairs(prepared, rows, beta=0.1)
    assert after.pairs == 4 and after.accuracy == 1.0 and after.margin > 0
    assert after.loss < math.log(2)


def spec(tmp_path: Path, model_dir: Path, **overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "job_id": "ftjob-dpo",
        "tenant": "acme",
        "suffix": "support",
        "model": "base",
        "base_model_dir": str(model_dir),
        "adapters_dir": str(tmp_path / "adapters"),
        "training_files": [{"path": str(PAIRS), "filename": PAIRS.name}],
        "hyperparameters": {"max_steps": 2, "lora_rank": 4, "heldout_fraction": 0.1},
        "seed": 0,
        "system_prompt": SYSTEM,
        "device": "cpu",
        "method": {"type": "dpo", "beta": 0.2},
        **overrides,
    }
    return JobSpec.from_dict(data)


def test_a_dpo_job_reports_publishes_and_continues_from_its_reference(tiny_model_dir: Path, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    run_job(spec(tmp_path, tiny_model_dir), events.append)
    kinds = [e.get("status", e["type"]) for e in events]
    assert kinds[:3] == ["validating_files", "running", "message"] and kinds[-1] == "succeeded"
    assert "36 preference pairs (DPO, beta 0.2, sft_weight 1)" in events[1]["message"]
    evals = {e["stage"]: e for e in events if e["type"] == "eval"}
    assert evals["before"]["preference_accuracy"] == 0.0 and evals["before"]["eval_loss"] == pytest.approx(math.log(2))
    assert "probe_recall" not in evals["after"] and isinstance(evals["after"]["reward_margin"], float)
    assert [e["step"] for e in events if e["type"] == "progress"][-1] == 2
    first = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "support")).manifest
    assert first.metrics["preference_accuracy_after"] == evals["after"]["preference_accuracy"]
    assert set(first.metrics) >= {"eval_loss_before", "reward_margin_before", "reward_margin_after", "train_loss"}
    assert first.extra["method"] == {"type": "dpo", "beta": 0.2, "sft_weight": 1.0}
    assert first.extra["samples"] == {"train_pairs": 36, "heldout_pairs": 4}
    answers = first.extra["heldout_answers"]
    assert len(answers) == 4 and set(answers[0]) == {"prompt", "preferred", "answer_before", "answer_after"}

    # Continuing from version 1: it is the reference, so the policy starts exactly on it (margin 0),
    # where the base as reference would give the first job's trained margins.
    events = []
    run_job(spec(tmp_path, tiny_model_dir, model="acme/support@1"), events.append)
    before = next(e for e in events if e["type"] == "eval")
    assert before["reward_margin"] == pytest.approx(0.0, abs=1e-5) and before["preference_accuracy"] == 0.0
    second = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "support")).manifest
    assert (second.version, second.extra["continued_from"]) == (2, "acme/support@1")


def test_a_dpo_job_refuses_other_files_and_stops_when_asked(tiny_model_dir: Path, tmp_path: Path) -> None:
    handbook = [{"path": str(ROOT / "examples" / "handbook.md"), "filename": "handbook.md"}]
    for overrides, code, fragment in (
        ({"training_files": handbook}, "invalid_training_file", "DPO needs preference JSONL"),
        ({"validation_files": handbook}, "invalid_validation_file", "this file is markdown"),
        ({"method": {"type": "supervised"}}, "invalid_training_file", "holds preference pairs"),
    ):
        events: list[dict[str, Any]] = []
        with pytest.raises(JobError):
            run_job(spec(tmp_path, tiny_model_dir, **overrides), events.append)
        assert events[-1]["code"] == code and fragment in events[-1]["message"], events[-1]
    events = []
    with pytest.raises(JobError):
        run_job(spec(tmp_path, tiny_model_dir), events.append, should_stop=lambda: True)
    assert events[-1]["code"] == "cancelled"
    assert AdapterStore(tmp_path / "adapters").list_adapters() == []
    assert json.dumps(events)  # every event JSON-ready
