"""Handbook recall: ``swaplora train`` with default settings on examples/handbook.md, then the probes.

Prints JSON: the training wall time (the issue's budget is 10 minutes on the 2-core CPU), the
manifest's own metrics (held-out loss and the job's probe recall, before/after), and the recall on
tests/trainer/handbook_probes.json (questions phrased differently from the document) of the base
and of the adapter, each counted with :func:`trainer.recall.answer_matches`.

    .venv/bin/python bench/handbook_recall.py                 # train with defaults, then evaluate
    .venv/bin/python bench/handbook_recall.py --data DIR --no-train   # evaluate an adapter already in DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.ids import AdapterRef  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from adapters.store import AdapterStore  # noqa: E402
from trainer.evaluate import stored_adapter_recall  # noqa: E402
from trainer.samples import Probe  # noqa: E402

PROBES = ROOT / "tests" / "trainer" / "handbook_probes.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data directory (default: a new temporary one)")
    parser.add_argument("--no-train", action="store_true", help="evaluate lumen/handbook already in --data")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="swaplora-recall-"))
    model_dir = prepare_embedded_model(ROOT / "data" / "models")
    result: dict = {"data": str(data)}
    if not args.no_train:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "swaplora.cli",
                "train",
                "--tenant",
                "lumen",
                "--name",
                "handbook",
                "--model",
                str(model_dir),
                "--data",
                str(data),
                str(ROOT / "examples" / "handbook.md"),
            ],
            check=True,
            cwd=ROOT,
        )
        result["train_wall_s"] = round(time.perf_counter() - started, 1)
    stored = AdapterStore(data / "adapters").resolve(AdapterRef("lumen", "handbook"))
    result["manifest_metrics"] = stored.manifest.metrics
    result["trained_tokens"] = stored.manifest.extra.get("trained_tokens")

    probes = [Probe(p["question"], tuple(p["expect"])) for p in json.loads(PROBES.read_text())]
    before, after, answers = stored_adapter_recall(model_dir, stored.path, probes, None)
    result.update(cpu=machine_info(), plan=stored.manifest.extra.get("execution_plan"))
    result.update(
        probes=len(probes),
        recall_base=round(before, 3),
        recall_adapter=round(after, 3),
        target_recall=0.8,
        target_train_wall_s=600,
        misses=[{"question": a["question"], "answer": a["answer"]} for a in answers if not a["correct"]],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
