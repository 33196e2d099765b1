"""Validation of uploads at the edge: ``python -m trainer.check`` in a subprocess, bounded in time and memory.

Contract: :meth:`FileChecker.check_file` returns the checker's one JSON object (``{"ok": true,
...}`` or ``{"ok": false, "code", "message"}``; see docs/training-jobs.md). Whatever goes wrong
with the checker itself (it crashes, runs past the timeout, exceeds its memory limit, prints
something that is not one JSON object) becomes ``{"ok": false, "code": "invalid_file",
"message": "<name> could not be read ..."}``: the caller answers 400 and keeps nothing. A
timed-out checker is killed with its whole process group. At most ``max_running`` checkers run
at once (``SWAPLORA_MAX_CONCURRENT_CHECKS``); a check that finds no free slot within ``wait_s``
is a 429 with ``Retry-After``, so a burst of uploads cannot fork without bound.
Parsing untrusted PDFs and DOCX files in a separate, limited process keeps the server safe.
(Hyperparameters need no such process: the route checks them in-process with
:mod:`adapters.hyperparameters`.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.jobs.child_process import child_setup, kill_group, trainer_command, trainer_env
from server.settings import Settings
from server.tenancy.rate_limits import rate_limited

log = logging.getLogger(__name__)
_MAX_OUTPUT = 1024 * 1024
_POLL_S = 0.05


@functools.cache
def _slots(count: int) -> threading.BoundedSemaphore:
    """The process-wide checker slots (a thread semaphore: the server's event loops and test
    clients' loops share it)."""
    return threading.BoundedSemaphore(count)


class FileChecker:
    """Runs ``trainer.check``; ``command`` replaces ``python -m trainer.check`` (tests)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        memory_bytes: int | None,
        command: Sequence[str] | None = None,
        max_running: int = 2,
        wait_s: float = 10.0,
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self.command = list(command) if command is not None else trainer_command("trainer.check")
        self.max_running = max_running
        """Checkers running at once in this process; more wait up to ``wait_s``, then get 429."""
        self.wait_s = wait_s

    @classmethod
    def from_settings(cls, settings: Settings) -> FileChecker:
        return cls(
            timeout_s=settings.file_check_timeout_s,
            memory_bytes=settings.file_check_memory_mb * 1024 * 1024,
            max_running=settings.max_concurrent_checks,
        )

    async def check_file(self, path: Path, filename: str, passages: Path | None = None) -> dict[str, Any]:
        """The verdict; with ``passages``, an accepted file's passages for retrieval are written there."""
        failure = f"{filename} could not be read"
        # "--filename=NAME": a name that begins with "-" (e.g. "-notes.txt") stays a value, not an option
        extra = [f"--passages={passages}"] if passages is not None else []
        return await self._run(["file", str(path), f"--filename={filename}", *extra], failure)

    async def _run(self, args: list[str], failure: str) -> dict[str, Any]:
        slots = _slots(self.max_running)
        waited = 0.0
        while not slots.acquire(blocking=False):
            if waited >= self.wait_s:
                raise rate_limited("Too many uploads are being checked right now; retry shortly.", 5)
            await asyncio.sleep(_POLL_S)
            waited += _POLL_S
        try:
            return await self._check(args, failure)
        finally:
            slots.release()

    async def _check(self, args: list[str], failure: str) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=trainer_env(threads=1),
            preexec_fn=child_setup(self.memory_bytes),
            start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout_s)
        except TimeoutError:
            kill_group(process.pid, signal.SIGKILL)
            await process.wait()
            return _refused(f"{failure}: checking it took longer than {self.timeout_s:g} s.")
        finally:
            if process.returncode is None:  # cancelled (client gone): never leave the checker behind
                kill_group(process.pid, signal.SIGKILL)
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
            log.warning("trainer.check %s failed (%s): %s", args[0], process.returncode, tail[0])
            return _refused(f"{failure}: the checker failed.")  # its stderr is logged above, not sent
        try:
            verdict = json.loads(stdout[:_MAX_OUTPUT])
        except (UnicodeDecodeError, json.JSONDecodeError):
            verdict = None
        if not isinstance(verdict, dict) or not isinstance(verdict.get("ok"), bool):
            log.warning("trainer.check %s printed no verdict: %r", args[0], stdout[:200])
            return _refused(f"{failure}: the checker gave no verdict.")
        return verdict


def _refused(message: str) -> dict[str, Any]:
    return {"ok": False, "code": "invalid_file", "message": message}
