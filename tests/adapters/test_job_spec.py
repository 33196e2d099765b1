"""The job spec: one builder, a JSON round trip, and a clear ``invalid_spec`` for anything malformed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.job_spec import InputFile, InvalidJobSpec, JobSpec

ROOT = Path(__file__).resolve().parents[2]


def spec_dict(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "job_id": "ftjob-1",
        "tenant": "acme",
        "suffix": "handbook",
        "model": "base",
        "base_model_dir": str(tmp_path / "model"),
        "adapters_dir": str(tmp_path / "adapters"),
        "training_files": [{"path": str(tmp_path / "a.md"), "filename": "a.md"}],
        "validation_files": [],
        "hyperparameters": {"n_epochs": 2},
        "seed": 3,
        "system_prompt": "Be kind.",
        "work_dir": None,
        "device": "cpu",
        "execution_plan": None,
        "plan_cache": None,
        "max_seconds_ceiling": 60.0,
        "grounded": False,
        "method": {"type": "supervised"},
        **overrides,
    }


def test_build_makes_paths_absolute_and_round_trips_through_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = JobSpec.build(
        job_id="ftjob-1",
        tenant="acme",
        suffix="faq",
        base_model_dir="model",
        adapters_dir=Path("adapters"),
        training_files=[InputFile(Path("docs/a.md"), "a.md")],
        hyperparameters={"n_epochs": 2},
        work_dir="work",
        plan_cache="data",
        max_seconds_ceiling=60,
    )
    data = spec.to_dict()
    assert data["base_model_dir"] == str(tmp_path / "model") and data["work_dir"] == str(tmp_path / "work")
    assert data["training_files"] == [{"path": str(tmp_path / "docs" / "a.md"), "filename": "a.md"}]
    assert data["validation_files"] == [] and data["execution_plan"] is None and data["max_seconds_ceiling"] == 60.0
    assert set(data) == {f for f in JobSpec.__dataclass_fields__}  # every key written
    assert JobSpec.from_dict(json.loads(json.dumps(data))) == spec


def test_a_well_formed_dict_reads_back_as_written(tmp_path: Path) -> None:
    data = spec_dict(tmp_path)
    spec = JobSpec.from_dict(data)
    assert spec.training_files == (InputFile(tmp_path / "a.md", "a.md"),) and spec.seed == 3
    assert spec.to_dict() == data
    minimal = {k: data[k] for k in ("job_id", "tenant", "suffix", "base_model_dir", "adapters_dir")}
    defaults = JobSpec.from_dict(minimal)
    assert (defaults.model, defaults.training_files, defaults.hyperparameters, defaults.seed) == ("base", (), {}, 0)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"tenant": "Not A Tenant"}, "Invalid tenant id"),
        ({"suffix": "bad_name"}, "Invalid adapter name"),
        ({"seed": True}, "seed"),
        ({"seed": "1"}, "seed"),
        ({"hyperparameters": [1]}, "hyperparameters"),
        ({"training_files": "a.md"}, "training_files"),
        ({"training_files": [{"path": "/a.md"}]}, "filename"),
        ({"validation_files": [{"path": 1, "filename": "a.md"}]}, "path"),
        ({"base_model_dir": 5}, "base_model_dir"),
        ({"execution_plan": "fast-please"}, "unknown execution plan"),
        ({"max_seconds_ceiling": 0}, "max_seconds_ceiling"),
        ({"max_seconds_ceiling": True}, "max_seconds_ceiling"),
        ({"device": 1}, "device"),
        ({"grounded": "yes"}, "grounded"),
        ({"job_id": ""}, "job_id"),
        ({"surprise": 1}, "'surprise'"),
        ({"method": "dpo"}, "method must be an object"),
        ({"method": {"type": "ppo"}}, "method must be"),
        ({"method": {"type": "dpo", "beta": 0}}, "beta"),
        ({"method": {"type": "supervised", "beta": 0.1}}, "'beta'"),
    ],
)
def test_a_malformed_spec_is_invalid_spec_naming_the_field(tmp_path: Path, overrides: dict, fragment: str) -> None:
    with pytest.raises(InvalidJobSpec) as caught:
        JobSpec.from_dict(spec_dict(tmp_path, **overrides))
    assert caught.value.code == "invalid_spec"
    assert caught.value.message.startswith("Invalid job spec: ") and fragment in caught.value.message


def test_not_an_object_or_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(InvalidJobSpec, match="JSON object"):
        JobSpec.from_dict([1])
    data = spec_dict(tmp_path)
    del data["adapters_dir"], data["tenant"]
    with pytest.raises(InvalidJobSpec, match="missing tenant, adapters_dir"):
        JobSpec.from_dict(data)


def test_constructing_directly_validates_too(tmp_path: Path) -> None:
    with pytest.raises(InvalidJobSpec, match="Invalid adapter name"):
        JobSpec("ftjob-1", "acme", "No!", tmp_path, tmp_path, ())


def test_a_dpo_method_reads_back_with_its_beta(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(spec_dict(tmp_path, method={"type": "dpo", "beta": 0.25}))
    assert spec.training_method.is_dpo and spec.training_method.beta == 0.25
    assert spec.to_dict()["method"] == {"type": "dpo", "beta": 0.25}
    assert JobSpec.from_dict(spec_dict(tmp_path, method=None)).training_method.type == "supervised"


def test_a_known_plan_name_is_kept(tmp_path: Path) -> None:
    assert JobSpec.from_dict(spec_dict(tmp_path, execution_plan="dense-fp32")).execution_plan == "dense-fp32"


def test_reading_a_spec_without_a_plan_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import json, sys\nfrom adapters.job_spec import JobSpec\n"
        f"JobSpec.from_dict(json.loads({json.dumps(json.dumps(spec_dict(tmp_path)))}))\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
