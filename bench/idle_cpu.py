"""CPU an idle server uses: ``swaplora serve`` with and without the web UI, nothing asked of it.

Prints one JSON object: per variant, the server process's CPU time (user + system, its threads
included) over ``--seconds`` of idleness after ``/ready``, as a percentage of one core.

    .venv/bin/python bench/idle_cpu.py
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.machine import machine_info  # noqa: E402
from bench import train_data  # noqa: E402
from tests.integration.conftest import start_server, stop_server  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_percent(model_dir: Path, data: Path, seconds: float, ui: bool) -> dict:
    server = start_server(model_dir, data, "sk-admin-" + secrets.token_hex(16), *([] if ui else ["--no-ui"]))
    try:
        time.sleep(3.0)  # start-up work (the UI's first requests, the job runner's recovery) settles
        before, started = cpu_seconds(server.process.pid), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds(server.process.pid) - before
        return {
            "cpu_percent_of_one_core": round(100 * used / (time.monotonic() - started), 2),
            "plan": (server.ready or {}).get("execution_plan", {}).get("name"),
        }
    finally:
        stop_server(server.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    model_dir = train_data.default_model_dir()
    result: dict = {"cpu": machine_info(), "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ui in (("with_ui", True), ("no_ui", False)):
            result[name] = idle_percent(model_dir, Path(tmp) / name, args.seconds, ui)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
