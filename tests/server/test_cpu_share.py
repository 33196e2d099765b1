"""The engine and training workers never ask for more threads than there are cores."""

from __future__ import annotations

import pytest

from server.cpu_share import CPUShare
from server.jobs.child_process import trainer_env


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 16])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_engine_and_workers_fit_the_cores(cores: int, workers: int) -> None:
    share = CPUShare(cores)
    engine, each = share.engine_threads(workers), share.worker_threads(workers)
    assert engine >= 1 and each >= 1
    if workers == 0:
        assert engine == cores  # alone, the engine uses every core
    elif cores >= 2 * workers:
        assert engine + workers * each <= cores  # never oversubscribed where it can be avoided


def test_two_cores_and_one_job_get_one_thread_each() -> None:
    assert (CPUShare(2).engine_threads(1), CPUShare(2).worker_threads(1)) == (1, 1)
    assert (CPUShare(16).engine_threads(1), CPUShare(16).worker_threads(1)) == (8, 8)


def test_the_operators_engine_threads_are_kept_and_workers_get_the_rest() -> None:
    share = CPUShare(8, engine_fixed=6)
    assert share.engine_threads(0) == share.engine_threads(1) == 6
    assert share.worker_threads(1) == 2 and share.worker_threads(4) == 1


def test_a_child_gets_its_thread_count_in_the_environment() -> None:
    env = trainer_env(threads=3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
