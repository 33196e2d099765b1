"""How the job runner starts a training worker and talks to it, wherever it runs.

Contract: a :class:`WorkerLauncher` starts ``command + [spec_path]`` with ``env``, the worker's
stderr appended to ``log_path``, and returns a :class:`WorkerHandle`: its stdout line by line
(``b""`` at the end), its exit status (negative: killed by that signal), and a way to signal its
whole process group. :class:`LocalLauncher` runs it as a child of this server (own session,
``PR_SET_PDEATHSIG``); :mod:`server.cluster.training` runs it as a Ray task on the cluster.
A launcher raises :class:`OSError` when the worker cannot start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from server.jobs.child_process import child_setup, kill_group
from server.jobs.worker_process import exit_status

MAX_LINE = 1024 * 1024
"""Longest stdout line read whole; a longer one raises ValueError from readline and is skipped."""


class WorkerHandle(Protocol):
    @property
    def pid(self) -> int | None:
        """The worker's process id on this machine (None where it runs elsewhere)."""

    async def readline(self) -> bytes: ...

    async def exit_status(self) -> int: ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the worker's process group (no-op once it has ended)."""


class WorkerLauncher(Protocol):
    async def launch(
        self, command: Sequence[str], spec_path: Path, env: dict[str, str], log_path: Path
    ) -> WorkerHandle: ...


class LocalWorker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def readline(self) -> bytes:
        assert self.process.stdout is not None
        return await self.process.stdout.readline()

    async def exit_status(self) -> int:
        return await exit_status(self.process)

    def signal(self, sig: int) -> None:
        kill_group(self.process.pid, sig)


class LocalLauncher:
    async def launch(self, command: Sequence[str], spec_path: Path, env: dict[str, str], log_path: Path) -> LocalWorker:
        with open(log_path, "ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *command,
                str(spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=MAX_LINE,
                env=env,
                preexec_fn=child_setup(),
                start_new_session=True,
            )
        return LocalWorker(process)
