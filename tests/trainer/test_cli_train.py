"""``swaplora train``: trains on files without a server, publishes, prints the adapter id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.ids import AdapterRef
from adapters.store import AdapterStore
from swaplora.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICK = json.dumps({"max_steps": 2, "max_seq_tokens": 256, "lora_rank": 4})


def test_train_publishes_and_prints_the_adapter_id(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    status = main(
        [
            "train",
            "--tenant",
            "acme",
            "--name",
            "faq",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tmp_path),
            "--hyperparameters",
            QUICK,
            "--epochs",
            "3",
            "--system-prompt",
            "You answer for Lumen Lane.",
            str(ROOT / "examples" / "handbook.md"),
            str(ROOT / "examples" / "faq.csv"),
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.strip() == "acme/faq@1"
    assert "2/2" in err and "eval after" in err  # the tqdm bar and the evaluation lines
    manifest = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "faq")).manifest
    assert manifest.extra["hyperparameters"]["n_epochs"] == 3
    assert manifest.extra["job_id"].startswith("ftjob-cli-")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hyperparameters", '{"lora_rank": 0}'], "lora_rank"),
        (["--name", "Bad Name"], "Invalid adapter name"),
        (["--from", "nothing"], "not found"),
    ],
)
def test_bad_input_exits_2_with_the_message(tiny_model_dir: Path, tmp_path: Path, capsys, args, message) -> None:
    base = ["train", "--tenant", "acme", "--name", "faq", "--model", str(tiny_model_dir), "--data", str(tmp_path)]
    status = main([*base, *args, str(ROOT / "examples" / "handbook.md")])
    assert status == 2
    assert message in capsys.readouterr().err
    assert AdapterStore(tmp_path / "adapters").list_adapters() == []


def test_a_bad_file_exits_2(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "notes.bin"
    bad.write_bytes(b"\x00\x01binary")
    status = main(
        [
            "train",
            "--tenant",
            "acme",
            "--name",
            "faq",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tmp_path),
            str(bad),
        ]
    )
    assert status == 2
    assert "notes.bin" in capsys.readouterr().err


def test_dpo_from_the_shell(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--tenant", "acme", "--name", "signs", "--model", str(tiny_model_dir), "--data", str(tmp_path)]
    pairs = str(ROOT / "examples" / "preferences" / "sign-off.jsonl")
    assert main([*base, "--dpo", "--beta", "0", pairs]) == 2
    assert "beta must be" in capsys.readouterr().err
    assert main([*base, "--dpo", "--beta", "0.3", "--hyperparameters", QUICK, pairs]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "acme/signs@1" and "eval after: held-out DPO loss" in err and "preference accuracy" in err
    manifest = AdapterStore(tmp_path / "adapters").resolve(AdapterRef("acme", "signs")).manifest
    assert manifest.extra["method"] == {"type": "dpo", "beta": 0.3, "sft_weight": 1.0}
