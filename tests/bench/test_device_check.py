"""The GPU check script runs end to end on the CPU with a tiny random-weight model, so it works
when a session is lent a GPU: every phase reports, the figures are consistent. No timing asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_device_check_reports_every_phase_on_a_tiny_model(tmp_path: Path) -> None:
    out_file = tmp_path / "check.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "device_check.py"),
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--loads",
            "4x2",
            "3x3",
            "--tokens",
            "3",
            "--repeat",
            "1",
            "--train-steps",
            "2",
            "--out",
            str(out_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    assert json.loads(out_file.read_text()) == out  # the file holds every phase too

    assert out["preflight"]["nf4_round_trip_relative_error"] < 0.2  # bitsandbytes works on the device
    nf4 = out["nf4"]
    assert 0.0025 < nf4["parameters_b"] < 0.004  # counted as the weights they stand for, not packed bytes
    assert nf4["linear4bit_layers"] == nf4["linear_layers"] == 2 * 7  # every projection of 2 layers
    assert nf4["quant_type"] == "nf4" and nf4["double_quant"] and nf4["plan"].startswith("nf4-")
    assert nf4["compute_dtype"] == {"nf4-bf16": "torch.bfloat16", "nf4-fp32": "torch.float32"}[nf4["plan"]]
    assert nf4["logits_finite"]

    engine = out["engine"]
    assert engine["base_1_stream_tok_s"] > 0 and engine["lora_1_stream_tok_s"] > 0
    for load in ("4x2", "3x3"):
        figures = engine[load]
        assert all(
            figures[name] > 0 and len(engine["runs"][f"{load}.{name}"]) == 1
            for name in ("base_tok_s", "one_adapter_tok_s", "mixed_adapters_tok_s")
        )
        assert math.isclose(
            figures["mixed_vs_base"], figures["mixed_adapters_tok_s"] / figures["base_tok_s"], rel_tol=0.01
        )

    trainer = out["trainer"]
    assert trainer["steps"] == 2 and trainer["sample_tokens"] > 0
    assert math.isfinite(trainer["final_loss"]) and trainer["final_loss"] > 0
