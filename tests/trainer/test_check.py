"""``python -m trainer.check``: one JSON verdict on stdout, exit 0, and never torch on the way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        "ok": True,
        "format": "markdown",
        "records": 11,
        "faq_pairs": 4,
        "characters": 1606,
    }
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


def test_hyperparameters_are_no_longer_a_subcommand() -> None:
    """The server checks them in-process (adapters.hyperparameters); only untrusted files need a process."""
    result = subprocess.run(
        [sys.executable, "-m", "trainer.check", "hyperparameters", "{}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_checking_files_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "h.pdf")
    script = (
        "import sys, io, contextlib\n"
        "from trainer.check import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['file', {str(pdf)!r}])\n"
        f"    main(['file', {str(HANDBOOK)!r}])\n"
        "roots = ('torch', 'transformers', 'peft', 'bitsandbytes')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
