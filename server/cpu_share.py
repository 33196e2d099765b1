"""How the server's CPU cores are shared between the engine and training workers.

Two OpenMP pools that together ask for more threads than there are cores wait for each other at
every parallel region: on two cores, an engine with two threads next to a training worker with
two threads slowed both by 5-50x (measured; ``bench/train_while_serving.py``). So the cores are
split, and every process gets its part:

- no training running: the engine gets every core (or ``SWAPLORA_TORCH_THREADS``);
- ``n`` workers running: they get half the cores between them (at least one thread each), the
  engine keeps the rest (at least one). With one or two cores that is one thread each: a decode
  step and a training step then share the cores the way the kernel schedules two processes,
  without OpenMP spinning against itself.
- the file checker (document parsing, no matmuls) runs with one thread.

The engine applies a new thread count between two steps (:meth:`server.engine.step_loop.Engine.set_threads`);
a worker gets its count in ``OMP_NUM_THREADS`` when it starts
(:func:`server.jobs.child_process.trainer_env`).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.machine import usable_cores


@dataclass(frozen=True)
class CPUShare:
    """Thread counts for the engine and each training worker, given what runs."""

    cores: int
    engine_fixed: int | None = None
    """The operator's ``SWAPLORA_TORCH_THREADS`` for the engine (None: decided here)."""

    @classmethod
    def for_this_machine(cls, engine_fixed: int | None = None) -> CPUShare:
        return cls(usable_cores(), engine_fixed)

    def worker_threads(self, workers: int) -> int:
        """Threads of each of ``workers`` training workers running at once."""
        if self.engine_fixed is not None:
            return max(1, (self.cores - self.engine_fixed) // max(1, workers))
        return max(1, (self.cores // 2) // max(1, workers))

    def engine_threads(self, workers: int) -> int:
        """Threads of the engine while ``workers`` training workers run."""
        if self.engine_fixed is not None:
            return self.engine_fixed
        if workers == 0:
            return self.cores
        return max(1, self.cores - workers * self.worker_threads(workers))
