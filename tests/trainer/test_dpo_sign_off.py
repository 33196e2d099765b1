"""REAL-MODEL DPO TEST (95-120 s of training on a 2-core CPU, so marked ``slow``: ``make test-slow``
runs it, ``make test`` does not): preference training teaches the embedded model a tenant's sign-off.
Two epochs instead of three are not enough (measured: the sign-off then closes 4 of 8 answers, or
repeats), so the run is kept whole and out of the 20-minute suite; ``tests/trainer/test_dpo.py``
checks the DPO job's mechanics in every run.

Issue 15's measure: on examples/preferences/sign-off.jsonl (40 questions; each answer with
"— The Lumen Lane team" preferred over the same answer without), first a supervised adapter
learns the answers WITHOUT the sign-off (the training questions only), then a DPO job starts
from it (it is the reference too) with the default DPO settings. On the 8 held-out pairs the
preference accuracy must reach 0.9, and the sign-off must close at least 80 % of the greedy
answers to the held-out questions, where the supervised adapter closed fewer than 20 % with it.
A signed answer ends with the sign-off, carries it once and has an answer before it (pure DPO
reached a full preference accuracy here too, but by answering with the sign-off repeated line
after line: that must not count). Both jobs run as the server's worker runs them
(:func:`trainer.job.run_job`); the answers are the DPO job's own, generated greedily before and
after training and kept in the published version's manifest (``heldout_answers``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.ids import AdapterRef
from adapters.store import AdapterStore
from trainer.documents import load_pairs
from trainer.job import JobSpec, run_job
from trainer.preference_recipe import split_pairs

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples" / "preferences" / "sign-off.jsonl"
SIGN_OFF = "— The Lumen Lane team"
SYSTEM = "You answer for Lumen Lane Bicycles."
HELDOUT = 0.2
SEED = 0


def signed(answer: str) -> bool:
    return answer.endswith(SIGN_OFF) and answer.count(SIGN_OFF) == 1 and bool(answer[: -len(SIGN_OFF)].strip())


def share(answers: list[str]) -> float:
    return sum(map(signed, answers)) / len(answers)


def job(model_dir: Path, tmp_path: Path, training: Path, **fields: Any) -> dict[str, Any]:
    spec = JobSpec.from_dict(
        {
            "job_id": f"ftjob-{training.stem}",
            "tenant": "lumen",
            "suffix": "support",
            "base_model_dir": str(model_dir),
            "adapters_dir": str(tmp_path / "adapters"),
            "training_files": [{"path": str(training), "filename": training.name}],
            "seed": SEED,
            "system_prompt": SYSTEM,
            "device": "cpu",
            **fields,
        }
    )
    events: list[dict[str, Any]] = []
    run_job(spec, events.append)
    assert events[-1]["type"] == "succeeded", events[-1]
    return events[-1]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_dpo_teaches_the_sign_off_the_supervised_adapter_never_wrote(embedded_model_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    train, held = split_pairs(load_pairs(PAIRS, PAIRS.name), HELDOUT, SEED)  # the split the DPO job makes
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        "".join(
            json.dumps({"messages": [*p.messages, {"role": "assistant", "content": p.non_preferred}]}) + "\n"
            for p in train
        )
    )
    # The budget is lifted in both jobs: on a busy shared CPU a budget would cut training short.
    job(embedded_model_dir, tmp_path, answers, hyperparameters={"lora_rank": 8, "n_epochs": 3, "heldout_fraction": 0})
    done = job(
        embedded_model_dir,
        tmp_path,
        PAIRS,
        model="lumen/support@1",
        hyperparameters={"n_epochs": 3, "heldout_fraction": HELDOUT, "max_seconds": 7200},
        method={"type": "dpo"},
    )
    stored = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("lumen", "support", 2))
    replies = stored.manifest.extra["heldout_answers"]
    before, after = share([r["answer_before"] for r in replies]), share([r["answer_after"] for r in replies])
    print(f"\nDPO: {json.dumps(done['metrics'])}\nsign-off before {before:.0%}, after {after:.0%}")
    print("\n".join(f"  {r['answer_before']!r} -> {r['answer_after']!r}" for r in replies))
    assert len(replies) == len(held) == 8 and stored.manifest.extra["method"]["type"] == "dpo"
    assert done["metrics"]["preference_accuracy_before"] == 0.0  # the reference is the starting adapter
    assert done["metrics"]["preference_accuracy_after"] >= 0.9
    assert before < 0.2
    assert after >= 0.8
    print(f"whole test {time.monotonic() - started:.0f} s")  # a figure for the log, not an assertion
