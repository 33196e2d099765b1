"""What the job runner knows of a training worker's process: when it has exited and how, what its
log's last line says, cleaning its work directory, and whether a pid is still that worker's.

Contract: :func:`exit_status` waits for the exit without waiting on the pipes (a leftover
grandchild may hold them); :func:`crash_message` is the stable text a client sees for a worker
that died without a result (the log's last line goes to the server log only: it may carry
paths or another library's internals); :func:`clean_work_dir` keeps ``spec.json`` and
``worker.log`` and never raises; :func:`is_worker_of` guards against reused pids.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from pathlib import Path

log = logging.getLogger(__name__)


async def exit_status(process: asyncio.subprocess.Process) -> int:
    """The process's exit status once it has exited.

    Not ``process.wait()``: in Python 3.11 that also waits for the pipes to close, which a
    leftover grandchild holding stdout would delay forever.
    """
    while process.returncode is None:
        await asyncio.sleep(0.2)
    return process.returncode


def crash_message(returncode: int, work_dir: Path) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        how = f"was killed by {name}" + (" (out of memory?)" if -returncode == signal.SIGKILL else "")
    else:
        how = f"exited with status {returncode} without reporting a result"
    tail = log_tail(work_dir / "worker.log")
    if tail:  # the operator's to read: a log line may carry paths or another library's internals
        log.warning("trainer of %s %s; last log line: %s", work_dir.name, how, tail)
    return f"The trainer {how}."


def log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def clean_work_dir(work_dir: Path) -> None:
    """Drop checkpoints and scratch; keep the spec and the log for a post-mortem. Never raises:
    a scratch file that cannot go is logged, and the job still ends."""
    try:
        for entry in work_dir.iterdir() if work_dir.is_dir() else ():
            if entry.name not in ("spec.json", "worker.log"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not clean %s: %s", work_dir, exc)


def is_worker_of(pid: int, job_id: str) -> bool:
    """Whether ``pid`` still runs and is the worker of ``job_id`` (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return job_id.encode() in cmdline
