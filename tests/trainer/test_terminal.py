"""``swaplora train``'s terminal side: a spec that is not well-formed or names a file that cannot be
read ends with exit status 2 and one readable line, never a traceback."""

from __future__ import annotations

import io
from pathlib import Path

from trainer.terminal import train_in_terminal


def test_a_malformed_spec_is_a_readable_input_error() -> None:
    out = io.StringIO()
    assert train_in_terminal({"job_id": 7}, out) == 2
    line = out.getvalue()
    assert "swaplora train: Invalid job spec" in line and "(invalid_spec)" in line and "Traceback" not in line


def test_a_missing_training_file_is_a_readable_input_error(tmp_path: Path, embedded_model_dir: Path) -> None:
    spec = {
        "job_id": "cli-test",
        "tenant": "acme",
        "suffix": "bot",
        "model": "base",
        "base_model_dir": str(embedded_model_dir),
        "adapters_dir": str(tmp_path / "adapters"),
        "training_files": [{"path": str(tmp_path / "gone.md"), "filename": "gone.md"}],
        "validation_files": [],
        "hyperparameters": {},
        "seed": 1,
        "system_prompt": None,
        "work_dir": str(tmp_path / "work"),
    }
    out = io.StringIO()
    assert train_in_terminal(spec, out) == 2
    assert "gone.md" in out.getvalue() and "Traceback" not in out.getvalue()
    assert not (tmp_path / "adapters").exists() or not any((tmp_path / "adapters").rglob("*.safetensors"))
