"""``python -m trainer.worker`` as the server runs it: a real subprocess on the tiny model.

Checks the protocol of docs/training-jobs.md: JSON lines only on stdout, events in order, exit 0
and a published, valid adapter on success; ``failed`` with a code, exit 1 and nothing published
on bad input and on SIGTERM (cancel); continuing from an adapter; another tenant's adapter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.ids import AdapterRef
from adapters.store import AdapterStore
from adapters.worker_events import parse_event

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = ROOT / "examples" / "handbook.md"


def job_spec(tmp_path: Path, model_dir: Path, **overrides: Any) -> Path:
    spec = {
        "job_id": "ftjob-test",
        "tenant": "acme",
        "suffix": "handbook",
        "model": "base",
        "base_model_dir": str(model_dir),
        "adapters_dir": str(tmp_path / "adapters"),
        "training_files": [{"path": str(HANDBOOK), "filename": "handbook.md"}],
        "validation_files": [],
        "hyperparameters": {"max_steps": 2, "max_seq_tokens": 256, "lora_rank": 4},
        "seed": 0,
        "system_prompt": "You answer for Lumen Lane Bicycles.",
        "work_dir": str(tmp_path / "work"),
        "device": "cpu",
        **overrides,
    }
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
    path.write_text(json.dumps(spec))
    return path


def run_worker(spec: Path) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-m", "trainer.worker", str(spec)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    lines = done.stdout.splitlines()
    assert all(parse_event(line) is not None for line in lines), lines  # every line a typed event
    return done.returncode, [json.loads(line) for line in lines]


def test_worker_trains_and_publishes(tiny_model_dir: Path, tmp_path: Path) -> None:
    code, events = run_worker(job_spec(tmp_path, tiny_model_dir, max_seconds_ceiling=300))
    assert code == 0, events
    kinds = [e["type"] if e["type"] != "status" else e["status"] for e in events]
    assert kinds[:2] == ["validating_files", "running"]
    assert kinds[-1] == "succeeded"
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["stage"] for e in evals] == ["before", "after"]
    assert kinds.index("progress") > kinds.index("eval") and "eval" in kinds[kinds.index("progress") :]
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == 2
    done = events[-1]
    assert done["fine_tuned_model"] == "acme/handbook@1"
    assert done["trained_tokens"] > 0
    manifest = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "handbook")).manifest
    assert manifest.source == "training" and manifest.rank == 4
    assert manifest.metrics["eval_loss_after"] < manifest.metrics["eval_loss_before"]
    assert manifest.extra["job_id"] == "ftjob-test" and len(manifest.extra["data_sha256"]) == 64
    assert manifest.extra["hyperparameters"]["max_steps"] == 2
    assert manifest.extra["resolved_hyperparameters"]["max_seconds"] == 300  # the operator's ceiling held

    # Continuing from it makes version 2, started from version 1's weights.
    code, events = run_worker(job_spec(tmp_path, tiny_model_dir, model="acme/handbook@1"))
    assert code == 0, events
    assert events[-1]["fine_tuned_model"] == "acme/handbook@2"
    second = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "handbook", 2)).manifest
    assert second.extra["continued_from"] == "acme/handbook@1"
    assert second.metrics["eval_loss_before"] == pytest.approx(manifest.metrics["eval_loss_after"], rel=1e-3)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"training_files": [{"path": "/nonexistent/file.md", "filename": "file.md"}]}, "invalid_training_file"),
        ({"training_files": []}, "invalid_training_file"),
        (
            {"validation_files": [{"path": str(ROOT / "pyproject.toml"), "filename": "x.toml"}]},
            "invalid_validation_file",
        ),
        ({"hyperparameters": {"n_epochs": 0}}, "invalid_hyperparameters"),
        ({"hyperparameters": {"colour": "blue"}}, "invalid_hyperparameters"),
        ({"model": "globex/theirs"}, "model_not_found"),
        ({"model": "acme/missing@3"}, "model_not_found"),
        ({"model": "../etc"}, "model_not_found"),
    ],
)
def test_bad_jobs_fail_with_a_code_and_publish_nothing(tiny_model_dir: Path, tmp_path: Path, overrides, code) -> None:
    from trainer.job import JobError, JobSpec, run_job

    spec = JobSpec.from_dict(json.loads(job_spec(tmp_path, tiny_model_dir, **overrides).read_text()))
    events: list[dict] = []
    with pytest.raises(JobError):
        run_job(spec, events.append)
    assert events[-1]["type"] == "failed" and events[-1]["code"] == code, events
    assert events[-1]["message"]
    assert AdapterStore(tmp_path / "adapters").list_adapters() == []


def test_worker_reports_bad_input_and_exits_1(tiny_model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text("")
    status, events = run_worker(
        job_spec(tmp_path, tiny_model_dir, training_files=[{"path": str(empty), "filename": "empty.md"}])
    )
    assert status == 1 and events[-1]["code"] == "invalid_training_file"
    assert "empty" in events[-1]["message"]
    status, events = run_worker(job_spec(tmp_path, tiny_model_dir, tenant="Not A Tenant"))
    assert status == 1 and events == [{"type": "failed", "code": "invalid_spec", "message": events[0]["message"]}]
    assert AdapterStore(tmp_path / "adapters").list_adapters() == []


def test_sigterm_cancels_and_publishes_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = job_spec(
        tmp_path, tiny_model_dir, hyperparameters={"max_steps": 100000, "n_epochs": 1000, "max_seq_tokens": 256}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.worker", str(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    events = []
    assert process.stdout is not None
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress":
            os.killpg(process.pid, signal.SIGTERM)
            break
    events += [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=120) == 1
    assert events[-1] == {"type": "failed", "code": "cancelled", "message": events[-1]["message"]}
    assert AdapterStore(tmp_path / "adapters").list_adapters() == []
