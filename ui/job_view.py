"""How a fine-tuning job looks in the Train tab: progress bar, loss curve, evaluation, history.

Pure functions from the API's objects (``GET /v1/fine_tuning/jobs/{id}`` and its events, OpenAI's
shapes plus swaplora's ``progress`` and ``metrics``) to what the components show; no I/O here.

- :func:`progress_html`: a ``<progress>`` element (``value`` = steps done, ``max`` = total steps)
  with the status in words; a finished job shows a full bar, a failed one its error message.
- :func:`loss_frame`: one row per ``metrics`` event carrying ``step`` and ``train_loss``.
- :func:`eval_rows`: the held-out measures before and after training, from the ``eval`` events
  (``data.stage``) or, failing those, the job's final ``metrics``: eval loss and probe recall
  for a supervised job; DPO loss, preference accuracy and reward margin for a DPO job (its
  ``method.type``).
- :func:`history_rows`: one line per job with its outcome.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import pandas as pd

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
HISTORY_HEADERS = ["Job", "Status", "Adapter", "Result", "Created (UTC)", "Finished (UTC)", "Error"]
EVAL_HEADERS = ["Metric", "Before training", "After training"]


def _time(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def progress_html(job: dict[str, Any] | None) -> str:
    if not job:
        return "<p>No job yet.</p>"
    progress = job.get("progress") or {}
    step, total = progress.get("step") or 0, progress.get("total_steps") or 0
    status = job["status"]
    if status == "succeeded":
        total = total or 1
        step = total
    words = {
        "validating_files": "Checking the files...",
        "queued": "Waiting for the trainer...",
        "running": f"Training: step {step} of {total}" if total else "Training: preparing...",
        "succeeded": f"Done: {job.get('fine_tuned_model')} is published and served.",
        "cancelled": "Cancelled: nothing was published.",
        "failed": f"Failed: {(job.get('error') or {}).get('message') or 'unknown error'}",
    }.get(status, status)
    bar = f'<progress id="train-progress" value="{step}" max="{max(total, 1)}" style="width:100%"></progress>'
    return (
        f'<div data-status="{html.escape(status)}" data-step="{step}" data-total="{total}">{bar}'
        f"<p><b>{html.escape(job['id'])}</b> — {html.escape(words)}</p></div>"
    )


def loss_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    points = {}
    for event in events:
        data = event.get("data") or {}
        if isinstance(data.get("step"), int) and isinstance(data.get("train_loss"), (int, float)):
            points[data["step"]] = float(data["train_loss"])
    return pd.DataFrame({"step": list(points), "train_loss": list(points.values())}).sort_values("step")


_MEASURES = {
    "supervised": [
        ("eval_loss", "eval loss (lower is better)", "{:.4f}"),
        ("probe_recall", "probe recall (higher is better)", "{:.0%}"),
    ],
    "dpo": [
        ("eval_loss", "DPO loss (lower is better)", "{:.4f}"),
        ("preference_accuracy", "preference accuracy (higher is better)", "{:.0%}"),
        ("reward_margin", "reward margin (higher is better)", "{:.3f}"),
    ],
}
"""Each method's measures: (key in events and metrics, label, format)."""


def _figure(value: Any, form: str) -> str:
    return form.format(value) if isinstance(value, (int, float)) else "–"


def eval_rows(job: dict[str, Any] | None, events: list[dict[str, Any]]) -> list[list[str]]:
    stages: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.get("data") or {}
        if data.get("stage") in ("before", "after"):
            stages[data["stage"]] = data
    metrics = (job or {}).get("metrics") or {}
    method = str(((job or {}).get("method") or {}).get("type"))
    measures = _MEASURES.get(method, _MEASURES["supervised"])
    for stage in ("before", "after"):
        stages.setdefault(stage, {key: metrics.get(f"{key}_{stage}") for key, _, _ in measures})
    return [[label, *(_figure(stages[s].get(key), form) for s in ("before", "after"))] for key, label, form in measures]


def history_rows(jobs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            j["id"],
            j["status"],
            j.get("suffix") or "",
            j.get("fine_tuned_model") or "",
            _time(j.get("created_at")),
            _time(j.get("finished_at")),
            (j.get("error") or {}).get("message") or "",
        ]
        for j in jobs
    ]
