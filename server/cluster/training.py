"""Fine-tuning workers as Ray tasks: the same ``python -m trainer.worker SPEC.json``, on a node the
cluster picks, with the resources it asks for.

Contract:

- :class:`RayLauncher` is the job runner's :class:`~server.jobs.worker_handle.WorkerLauncher` in
  a cluster. Each job gets a :class:`TrainingHost` actor (``cluster_training_cpus`` CPUs,
  ``cluster_replica_gpus`` GPUs: 1 where the cluster has GPUs) that runs the worker as its child
  process (own session, dies with the actor) and streams its stdout lines back; the runner reads
  them as events exactly as from a local worker, so states, events, cancel (SIGTERM, then
  SIGKILL to the worker's group on its node) and the publish path are the same.
- The spec, the worker's log and the adapter store are paths under the data directory, which
  every node must see at the same path (the shared filesystem the replicas read adapters from).
- When the actor or its node dies, the stream breaks: the worker's exit status reads as killed
  (SIGKILL) and the job fails ``trainer_crashed``; nothing half-published is left (the store's
  publish is atomic, and the runner sweeps after every unsuccessful worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from server.cluster.launch import connect, replica_gpus
from server.jobs.worker_handle import LocalLauncher, LocalWorker
from server.settings import Settings

log = logging.getLogger(__name__)


class TrainingHost:
    """Runs one worker on its node (a Ray actor; see the module docstring)."""

    def __init__(self) -> None:
        self._worker: LocalWorker | None = None

    async def run(
        self, command: Sequence[str], spec_path: str, env: dict[str, str], log_path: str
    ) -> AsyncIterator[Any]:
        """The worker's stdout lines (bytes), then its exit status (an int)."""
        self._worker = await LocalLauncher().launch(command, Path(spec_path), env, Path(log_path))
        while True:
            try:
                line = await self._worker.readline()
            except ValueError:  # over-long: skipped here as the runner would skip it
                continue
            if not line:
                break
            yield line
        yield await self._worker.exit_status()

    def signal(self, sig: int) -> None:
        if self._worker is not None:
            self._worker.signal(sig)


class RayWorker:
    """The runner's handle on a worker running in a :class:`TrainingHost`."""

    def __init__(self, actor: Any, lines: Any) -> None:
        self._actor = actor
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()
        self._returncode: int | None = None
        self._pump = asyncio.get_running_loop().create_task(self._read(lines), name="swaplora-ray-worker")

    @property
    def pid(self) -> int | None:
        return None  # the worker's pid is on its node, not here

    async def _read(self, lines: Any) -> None:
        try:
            async for ref in lines:
                item = await ref
                if isinstance(item, int):
                    self._returncode = item
                else:
                    self._lines.put_nowait(item)
        except Exception as exc:  # the actor or its node died: as if the worker was killed
            log.warning("a training actor failed: %s", type(exc).__name__)
        finally:
            if self._returncode is None:
                self._returncode = -signal.SIGKILL
            self._lines.put_nowait(b"")
            await self._release()

    async def _release(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self._actor)

    async def readline(self) -> bytes:
        line = await self._lines.get()
        if not line:
            self._lines.put_nowait(b"")  # every later read sees the end too
        return line

    async def exit_status(self) -> int:
        await asyncio.shield(self._pump)
        assert self._returncode is not None
        return self._returncode

    def signal(self, sig: int) -> None:
        if not self._pump.done():
            self._actor.signal.remote(sig)


class RayLauncher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def launch(self, command: Sequence[str], spec_path: Path, env: dict[str, str], log_path: Path) -> RayWorker:
        import ray

        try:
            await asyncio.to_thread(connect, self.settings)
            gpus = await asyncio.to_thread(replica_gpus, self.settings)
            host = ray.remote(TrainingHost).options(
                num_cpus=self.settings.cluster_training_cpus, num_gpus=gpus, max_restarts=0
            )
            actor: Any = host.remote()
            lines = actor.run.options(num_returns="streaming").remote(list(command), str(spec_path), env, str(log_path))
        except Exception as exc:  # Ray refused: the runner fails the job trainer_crashed
            raise OSError(f"the training task did not start: {exc}") from exc
        return RayWorker(actor, lines)
