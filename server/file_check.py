"""Validation at the edge: ``python -m trainer.check`` in a subprocess, bounded in time and memory.

Contract: :meth:`FileChecker.check_file` and :meth:`FileChecker.check_hyperparameters` return the
checker's one JSON object (``{"ok": true, ...}`` or ``{"ok": false, "code", "message"}``; see
docs/training-jobs.md). Whatever goes wrong with the checker itself (it crashes, runs past the
timeout, exceeds its memory limit, prints something that is not one JSON object) becomes
``{"ok": false, "code": "invalid_file", "message": "<name> could not be read ..."}``: the caller
answers 400 and keeps nothing. A timed-out checker is killed with its whole process group.
Parsing untrusted PDFs and DOCX files in a separate, limited process keeps the server safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.child_process import child_setup, kill_group, trainer_command, trainer_env
from server.settings import Settings

log = logging.getLogger(__name__)
_MAX_OUTPUT = 1024 * 1024


class FileChecker:
    """Runs ``trainer.check``; ``command`` replaces ``python -m trainer.check`` (tests)."""

    def __init__(self, *, timeout_s: float, memory_bytes: int | None, command: Sequence[str] | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self.command = list(command) if command is not None else trainer_command("trainer.check")

    @classmethod
    def from_settings(cls, settings: Settings) -> FileChecker:
        return cls(timeout_s=settings.file_check_timeout_s, memory_bytes=settings.file_check_memory_mb * 1024 * 1024)

    async def check_file(self, path: Path, filename: str) -> dict[str, Any]:
        failure = f"{filename} could not be read"
        # "--filename=NAME": a name that begins with "-" (e.g. "-notes.txt") stays a value, not an option
        return await self._run(["file", str(path), f"--filename={filename}"], failure)

    async def check_hyperparameters(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return await self._run(["hyperparameters", json.dumps(hyperparameters)], "hyperparameters could not be checked")

    async def _run(self, args: list[str], failure: str) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            *self.command, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=trainer_env(threads=1), preexec_fn=child_setup(self.memory_bytes), start_new_session=True,
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
