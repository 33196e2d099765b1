"""A training job in the foreground, for ``swaplora train``: a tqdm progress bar and plain messages.

:func:`train_in_terminal` runs :func:`trainer.job.run_job` in this process (no server needed;
the adapter is published to the same store the server reads), draws the ``progress`` events as a
tqdm bar on stderr and writes the other events there as lines. Ctrl-C stops training at the
next step and publishes nothing. It returns the exit status: 0 after publishing (the new
adapter's ``tenant/name@version`` is printed on stdout), 2 when the input is at fault (bad or
unreadable files, hyperparameters, names, the adapter to continue from), 1 for other failures.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, TextIO

from tqdm import tqdm

from adapters.job_spec import InvalidJobSpec
from trainer.job import JobError, JobSpec, run_job

INPUT_ERRORS = frozenset(
    {
        "invalid_spec",
        "invalid_training_file",
        "invalid_validation_file",
        "invalid_hyperparameters",
        "model_not_found",
        "incompatible_model",
    }
)


class _Display:
    """Turns protocol events into a progress bar and lines on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bar: tqdm | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "progress":
            if self.bar is None:
                self.bar = tqdm(total=event["total_steps"], unit="step", file=self.out, dynamic_ncols=True)
            self.bar.total = event["total_steps"]
            self.bar.n = event["step"]
            self.bar.set_postfix(
                loss=f"{event['train_loss']:.3f}",
                lr=f"{event['learning_rate']:.1e}",
                tok_s=f"{event['tokens_per_second']:.0f}",
                refresh=False,
            )
            self.bar.refresh()
            return
        if kind == "eval" and self.bar is not None:
            self.bar.close()
            self.bar = None
        tqdm.write(self._line(event), file=self.out)

    @staticmethod
    def _line(event: dict[str, Any]) -> str:
        kind = event["type"]
        if kind == "status":
            return f"[{event['status']}] {event['message']}"
        if kind == "eval" and "preference_accuracy" in event:
            accuracy, margin = event["preference_accuracy"], event["reward_margin"]
            return (
                f"eval {event['stage']}: held-out DPO loss {event['eval_loss']:.4f}, "
                f"preference accuracy {accuracy:.0%}, reward margin {margin:.3f}"
            )
        if kind == "eval":
            loss, recall = event["eval_loss"], event["probe_recall"]
            return f"eval {event['stage']}: held-out loss {loss:.4f}, probe recall {recall:.0%}"
        if kind == "succeeded":
            return f"published {event['fine_tuned_model']} ({event['trained_tokens']} tokens trained)"
        if kind == "failed":
            return f"swaplora train: {event['message']} ({event['code']})"
        return str(event.get("message", event))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_in_terminal(spec: dict[str, Any], out: TextIO | None = None) -> int:
    """Run the job described by ``spec`` (a worker spec dict); return the exit status.

    Progress and messages go to ``out`` (default: the current ``sys.stderr``)."""
    display = _Display(out or sys.stderr)
    try:
        job = JobSpec.from_dict(spec)
    except (JobError, InvalidJobSpec) as exc:
        display({"type": "failed", "code": exc.code, "message": exc.message})
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        manifest = run_job(job, display, stop.is_set)
    except JobError as exc:
        return 2 if exc.code in INPUT_ERRORS else 1
    finally:
        signal.signal(signal.SIGINT, previous)
        display.close()
    print(manifest.model_id)
    return 0
