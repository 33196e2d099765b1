"""``python -m trainer.worker SPEC.json``: run one training job in this process (docs/training-jobs.md).

Stdout carries the protocol's events only (:mod:`adapters.worker_events`), one JSON object per
line, flushed at once; anything else a library prints goes to stderr (``sys.stdout`` is pointed
there before any import that could print), and so do the logs. The spec file is read with
:meth:`adapters.job_spec.JobSpec.from_dict`. Exit status 0 after ``succeeded``, 1 after
``failed``: ``invalid_spec`` for a spec that cannot be read or is malformed, the job's own codes
(:mod:`trainer.job`), and ``trainer_error`` for an unexpected exception, which is logged with its
traceback, so the server always learns a reason. A signal that kills the process is the
server's ``trainer_crashed``.

SIGTERM (the server's cancel) sets a flag the job polls between stages and before every
training step: the job stops there, publishes nothing and ends with ``failed`` / ``cancelled``
(exit 1). A second SIGTERM, or SIGINT, is not special-cased beyond the same flag; the server
sends SIGKILL after its grace period.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from adapters.job_spec import InvalidJobSpec, JobSpec
from adapters.worker_events import FailedEvent

Emit = Callable[[dict[str, Any]], None]


def _emitter(out: TextIO) -> Emit:
    """Writes each event's JSON object as one line on ``out`` (NaN and infinities as null)."""
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        from trainer.publish import json_safe

        line = json.dumps(json_safe(event), allow_nan=False)
        with lock:
            out.write(line + "\n")
            out.flush()

    return emit


def _read_spec(argv: list[str]) -> JobSpec:
    """The job spec in ``argv[0]``; :class:`InvalidJobSpec` if there is none or it is unreadable."""
    if len(argv) != 1:
        raise InvalidJobSpec("usage: python -m trainer.worker SPEC.json")
    try:
        data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable or non-JSON spec file
        raise InvalidJobSpec(f"cannot read {argv[0]}: {exc}") from None
    return JobSpec.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    """Run the job in ``argv[0]`` (a JSON spec file); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the event stream
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emit = _emitter(protocol_out)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        spec = _read_spec(argv)
    except InvalidJobSpec as exc:
        emit(FailedEvent(exc.code, exc.message).to_dict())
        return 1
    from trainer.job import JobError, run_job  # after stdout is redirected: its imports may print

    try:
        run_job(spec, emit, stop.is_set)
    except JobError:
        return 1  # run_job has emitted the failure
    except Exception as exc:
        traceback.print_exc()
        # the traceback went to stderr (the job's worker.log, the operator's); the owner gets a stable message
        message = f"Training failed on an internal error ({type(exc).__name__}); the server's log has the details."
        emit(FailedEvent("trainer_error", message).to_dict())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
