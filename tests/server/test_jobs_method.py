"""OpenAI's ``method`` on ``/v1/fine_tuning/jobs``: a DPO job on a preference file (the job object,
the worker's spec), supervised through ``method``, every bad method or mismatched file a 400 naming
the parameter that creates nothing, a database from before methods read as supervised, and a DPO
job's eval event as the job's events show it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.hyperparameters import normalise
from adapters.worker_events import EvalEvent, parse_event
from server.jobs.events import describe_event
from server.jobs.job_store import JobStore
from tests.server.helpers import assert_error, create, wait_ended

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples" / "preferences" / "sign-off.jsonl"


@pytest.fixture(scope="module")
def pairs(api: SimpleNamespace) -> str:
    """Acme's upload of the example preference file."""
    uploaded = api.client.post(
        "/v1/files", headers=api.acme, data={"purpose": "fine-tune"}, files={"file": (PAIRS.name, PAIRS.read_bytes())}
    )
    assert uploaded.status_code == 200, uploaded.text
    assert (uploaded.json()["format"], uploaded.json()["records"]) == ("preference_jsonl", 40)
    return str(uploaded.json()["id"])


def test_a_dpo_job_shows_its_method_and_hands_it_to_the_worker(api: SimpleNamespace, pairs: str) -> None:
    method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25, "n_epochs": 2}}}
    response = create(api, training_file=pairs, model="acme/support", suffix="succeed-dpo", method=method)
    assert response.status_code == 200, response.text
    job = response.json()
    usual = {**normalise({}), "n_epochs": 2}
    assert job["hyperparameters"] == usual
    assert job["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {**usual, "beta": 0.25, "sft_weight": 1.0}},
    }
    done = wait_ended(api, job["id"])
    assert done["status"] == "succeeded" and done["method"] == job["method"]
    spec = json.loads((api.services.settings.jobs_dir / job["id"] / "spec.json").read_text())
    assert spec["method"] == {"type": "dpo", "beta": 0.25, "sft_weight": 1.0} and spec["model"] == "acme/support"
    assert spec["hyperparameters"] == usual
    listed = api.client.get("/v1/fine_tuning/jobs?limit=100", headers=api.acme).json()["data"]
    assert next(j for j in listed if j["id"] == job["id"])["method"]["type"] == "dpo"


def test_supervised_through_method_is_the_same_as_top_level(api: SimpleNamespace, pairs: str) -> None:
    via_method = create(
        api, suffix="fail-a", method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4}}}
    )
    top_level = create(api, suffix="fail-b", hyperparameters={"n_epochs": 4})
    assert via_method.status_code == top_level.status_code == 200, via_method.text
    first, second = via_method.json(), top_level.json()
    assert first["hyperparameters"] == second["hyperparameters"] and first["hyperparameters"]["n_epochs"] == 4
    assert (
        first["method"]
        == second["method"]
        == {"type": "supervised", "supervised": {"hyperparameters": first["hyperparameters"]}}
    )
    dpo_defaults = create(api, training_file=pairs, suffix="fail-c", method={"type": "dpo"}).json()
    assert dpo_defaults["method"]["dpo"]["hyperparameters"]["beta"] == 0.1


DPO = "method.dpo.hyperparameters"


def dpo(**hyperparameters: object) -> dict:
    return {"type": "dpo", "dpo": {"hyperparameters": hyperparameters}}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"method": "dpo"}, "invalid_request", "method"),
        ({"method": {"type": "ppo"}}, "invalid_request", "method.type"),
        ({"method": {"dpo": {}}}, "invalid_request", "method.type"),
        ({"method": {"type": "dpo", "supervised": {}}}, "invalid_request", "method.supervised"),
        ({"method": {"type": "dpo", "dpo": [1]}}, "invalid_request", "method.dpo"),
        ({"method": {"type": "dpo", "dpo": {"hyperparameters": [1]}}}, "invalid_request", DPO),
        ({"method": {"type": "dpo", "dpo": {"beta": 0.1}}}, "invalid_request", "method.dpo.beta"),
        ({"method": dpo(beta=0)}, "invalid_hyperparameters", f"{DPO}.beta"),
        ({"method": dpo(beta=10.5)}, "invalid_hyperparameters", f"{DPO}.beta"),
        ({"method": dpo(beta="high")}, "invalid_hyperparameters", f"{DPO}.beta"),
        ({"method": dpo(beta=True)}, "invalid_hyperparameters", f"{DPO}.beta"),
        ({"method": dpo(sft_weight=-1)}, "invalid_hyperparameters", f"{DPO}.sft_weight"),
        ({"method": dpo(n_epochs=0)}, "invalid_hyperparameters", f"{DPO}.n_epochs"),
        ({"method": dpo(n_epochs=51)}, "invalid_hyperparameters", f"{DPO}.n_epochs"),  # the operator's ceiling
        ({"method": dpo(colour="blue")}, "invalid_hyperparameters", f"{DPO}.colour"),
        ({"method": dpo(n_epochs=2), "hyperparameters": {"n_epochs": 3}}, "invalid_request", "hyperparameters"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}},
            "invalid_hyperparameters",
            "method.supervised.hyperparameters.beta",
        ),
        ({"method": dpo(), "training_file": "$handbook"}, "invalid_training_file", "training_file"),
        ({"training_file": "$pairs"}, "invalid_training_file", "training_file"),
        ({"method": dpo(), "validation_file": "$handbook"}, "invalid_validation_file", "validation_file"),
    ],
)
def test_bad_methods_are_400s_naming_the_parameter_and_create_nothing(
    api: SimpleNamespace, pairs: str, body: dict, code: str, param: str
) -> None:
    files = {"$handbook": api.file["acme"], "$pairs": pairs}
    body = {"training_file": pairs if "method" in body else api.file["acme"], **body}
    body = {key: files.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    before = [j.id for j in api.services.jobs.list_jobs(None, limit=1000)[0]]
    error = assert_error(create(api, **body), 400, code)
    assert error["param"] == param, error
    assert [j.id for j in api.services.jobs.list_jobs(None, limit=1000)[0]] == before


def test_a_database_from_before_methods_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, "
            "model TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT, suffix TEXT NOT NULL, "
            "hyperparameters TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL, "
            "started_at INTEGER, finished_at INTEGER, fine_tuned_model TEXT, trained_tokens INTEGER, error_code TEXT, "
            "error_message TEXT, error_param TEXT, metrics TEXT, step INTEGER, total_steps INTEGER, "
            "estimated_finish INTEGER, pid INTEGER)"
        )
        old.execute(
            "INSERT INTO jobs (id, tenant, model, training_file, suffix, hyperparameters, seed, status, created_at) "
            "VALUES ('ftjob-old', 'acme', 'base', 'file-1', 'faq', '{}', 1, 'succeeded', 0)"
        )
    store = JobStore(path)
    assert store.get("ftjob-old").method == {"type": "supervised"}
    new = store.create(
        tenant="acme",
        model="base",
        training_file="file-2",
        validation_file=None,
        suffix="faq",
        hyperparameters={},
        seed=2,
        method={"type": "dpo", "beta": 0.1, "sft_weight": 1.0},
    )
    assert JobStore(path).get(new.id).method == {"type": "dpo", "beta": 0.1, "sft_weight": 1.0}


def test_a_dpo_eval_event_reads_and_is_described_with_its_measures() -> None:
    line = json.dumps(
        {"type": "eval", "stage": "after", "eval_loss": 0.01, "preference_accuracy": 0.9, "reward_margin": 4.2}
    )
    event = parse_event(line)
    assert event == EvalEvent("after", 0.01, None, 0.9, 4.2)
    described = describe_event(event)
    assert described is not None and described.type == "metrics"
    assert (
        described.message == "Evaluation after training: DPO loss=0.0100, preference accuracy=90%, reward margin=4.200"
    )
    assert described.data == {"stage": "after", "eval_loss": 0.01, "preference_accuracy": 0.9, "reward_margin": 4.2}
    mistyped = parse_event(line.replace("0.9", '"high"'))
    assert isinstance(mistyped, EvalEvent) and mistyped.preference_accuracy is None
