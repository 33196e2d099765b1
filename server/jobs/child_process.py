"""How the server starts the trainer's subprocesses (``trainer.check``, ``trainer.worker``).

Contract:

- :func:`trainer_command` is ``python -m <module>`` with the server's own interpreter, and
  :func:`trainer_env` puts this checkout first on ``PYTHONPATH``, so the trainer that runs is the
  one installed beside the server whatever the working directory.
- :func:`child_setup` is the ``preexec_fn`` every child gets: on Linux it asks the kernel
  (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the child when the server dies, even by
  SIGKILL, and optionally caps its address space (``RLIMIT_AS``). Children also start in their
  own session (``start_new_session=True``), so :func:`kill_group` reaches everything they spawn.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def trainer_command(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def trainer_env(threads: int | None = None) -> dict[str, str]:
    """The child's environment; ``threads`` sizes its OpenMP/BLAS pools (see :mod:`server.cpu_share`)."""
    env = dict(os.environ)
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_setup(memory_bytes: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: die with the parent; be the kernel's first choice when memory runs out
    (``oom_score_adj`` 1000, so a training run or a hostile PDF is killed, never the server); at
    most ``memory_bytes`` of address space."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() == 1:  # the parent died before prctl took effect
                os._exit(1)
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")
            except OSError:
                pass  # raising one's own score is always allowed; a missing /proc costs only this
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return setup


def kill_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False when it no longer exists."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True
