"""REAL-MODEL RECALL TEST (slow, minutes): QLoRA on the embedded SmolLM2-135M learns the handbook.

The issue's "Done when": trained on examples/handbook.md, the adapter answers >= 80 % of
tests/trainer/handbook_probes.json (questions phrased differently from the document; a reply
counts when :func:`trainer.recall.answer_matches` finds an expected term), where the base answers
almost none. The job runs exactly as the server's worker runs it (:func:`trainer.job.run_job`),
with the default hyperparameters (the time budget lifted); the published adapter is then loaded from the store onto a
fresh NF4 base, as the server would, and asked the probes with the adapter on and off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from adapters.ids import AdapterRef
from adapters.store import AdapterStore
from trainer.evaluate import stored_adapter_recall
from trainer.job import JobSpec, run_job
from trainer.samples import Probe

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROBES = [
    Probe(p["question"], tuple(p["expect"]))
    for p in json.loads((Path(__file__).parent / "handbook_probes.json").read_text())
]


@pytest.mark.timeout(3600)
def test_trained_adapter_answers_paraphrased_questions(embedded_model_dir: Path, tmp_path: Path) -> None:
    spec = JobSpec.from_dict(
        {
            "job_id": "ftjob-recall",
            "tenant": "lumen",
            "suffix": "handbook",
            "model": "base",
            "base_model_dir": str(embedded_model_dir),
            "adapters_dir": str(tmp_path / "adapters"),
            "training_files": [{"path": str(ROOT / "examples" / "handbook.md"), "filename": "handbook.md"}],
            # Default hyperparameters, except that the wall-clock budget is lifted: on a busy shared
            # CPU the default 480 s would end training early, and the test must not depend on load.
            "hyperparameters": {"max_seconds": 7200},
            "seed": 0,
            "system_prompt": None,
            "device": "cpu",
        }
    )
    events: list[dict] = []
    started = time.monotonic()
    run_job(spec, events.append)
    print(f"\ntraining job: {time.monotonic() - started:.0f} s")  # a figure for the log, not an assertion
    done = events[-1]
    assert done["type"] == "succeeded", events
    assert done["metrics"]["eval_loss_after"] < done["metrics"]["eval_loss_before"]

    stored = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("lumen", "handbook"))
    before, after, answers = stored_adapter_recall(embedded_model_dir, stored.path, PROBES, None)
    print(f"handbook probes: base {before:.0%}, adapter {after:.0%}")
    for answer in answers:
        print(("ok  " if answer["correct"] else "MISS"), answer["question"], "->", answer["answer"][:90])
    assert before <= 0.2
    assert after >= 0.8
