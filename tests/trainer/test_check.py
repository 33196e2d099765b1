"""``python -m trainer.check``: one JSON verdict on stdout, exit 0, and never torch on the way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.handbook_formats import HANDBOOK, write_pdf

ROOT = Path(__file__).resolve().parents[2]


def check(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "trainer.check", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_file_verdicts(tmp_path: Path) -> None:
    assert check("file", str(HANDBOOK), "--filename", "handbook.md") == {
        "ok": True, "format": "markdown", "records": 11, "faq_pairs": 4, "characters": 1606,
    }  # fmt: skip
    pdf = check("file", str(write_pdf(tmp_path / "upload-1")), "--filename", "handbook.pdf")
    assert pdf["ok"] and pdf["format"] == "pdf" and pdf["faq_pairs"] == 4
    latin = tmp_path / "upload-2"
    latin.write_bytes("Caf\u00e9".encode("latin-1"))
    verdict = check("file", str(latin), "--filename", "notes.txt")
    assert verdict["ok"] is False and verdict["code"] == "invalid_file" and "not UTF-8" in verdict["message"]
    assert verdict["message"].startswith("notes.txt: ")
    big = tmp_path / "upload-3"
    big.write_text("x" * 2_000_001)
    assert check("file", str(big), "--filename", "big.txt")["code"] == "file_too_large"


def test_hyperparameter_verdicts() -> None:
    pytest.importorskip("trainer.hyperparameters")
    good = check("hyperparameters", json.dumps({"n_epochs": 2}))
    assert good["ok"] is True and good["hyperparameters"]["n_epochs"] == 2
    assert len(good["hyperparameters"]) > 1  # defaults filled in
    bad = check("hyperparameters", json.dumps({"n_epochs": 2, "warp_speed": 9}))
    assert bad["ok"] is False and bad["code"] == "invalid_hyperparameters" and bad["param"] == "warp_speed"
    assert check("hyperparameters", "[1, 2]")["code"] == "invalid_hyperparameters"
    assert check("hyperparameters", "{oops")["code"] == "invalid_hyperparameters"


def test_neither_subcommand_imports_torch_or_transformers(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "h.pdf")
    script = (
        "import sys, io, contextlib\n"
        "from trainer.check import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['file', {str(pdf)!r}])\n"
        f"    main(['file', {str(HANDBOOK)!r}])\n"
        "    main(['hyperparameters', '{}'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'bitsandbytes'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
