"""The **Train** tab: documents in, a new adapter version out, watched live.

Contract:

- Upload a training file in any format the trainer reads (and optionally a validation file);
  each goes to ``POST /v1/files`` (the server checks it and refuses bad ones with a readable
  message), then ``POST /v1/fine_tuning/jobs`` starts the job with the adapter name (``suffix``),
  the model to start from (``base`` or an adapter) and the hyperparameters.
- Hyperparameters are prefilled with the trainer's defaults ("auto" where it decides from the
  data); only the ones the user changed are sent, so the trainer's own defaults stay in charge.
- The method: supervised, or "Preference (DPO)" with its ``beta`` and ``sft_weight``, offered
  (and chosen) when the training file is OpenAI's preference JSONL (:func:`is_preference_file`
  peeks at its first line; the server checks the whole file). A DPO job is sent as OpenAI's
  ``method`` with the hyperparameters inside it (:func:`job_body`).
- While the job runs the tab polls the job and its events once a second: a progress bar, a loss
  curve that grows with every step, then eval loss and probe recall before/after. Cancel asks
  the server to stop the job; a cancelled or failed job is reported in words. The history lists
  the tenant's jobs with their outcome; any of them can be watched again.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from ui.api_client import ApiClient
from ui.job_view import EVAL_HEADERS, HISTORY_HEADERS, TERMINAL, eval_rows, history_rows, loss_frame, progress_html
from ui.session import Session, load_catalog, model_dropdown, require

TRAIN_TYPES = [".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl", ".csv"]
POLL_S = 1.0
JOB_ID = re.compile(r"^ftjob-[A-Za-z0-9_-]{1,100}$")
BASIC = {"n_epochs": "auto", "learning_rate_multiplier": "auto", "batch_size": "auto"}
ADVANCED = {
    "lora_rank": "16",
    "lora_alpha": "auto",
    "lora_dropout": "0.0",
    "learning_rate": "auto",
    "max_seq_tokens": "1024",
    "warmup_ratio": "0.05",
    "max_seconds": "auto",
    "max_steps": "",
    "heldout_fraction": "0.1",
}
DEFAULTS = {**BASIC, **ADVANCED}
SUPERVISED, DPO = "Supervised", "Preference (DPO)"
DPO_FIELDS = {"beta": "0.1", "sft_weight": "auto"}
"""DPO's own hyperparameters and what the fields show (the server's defaults)."""
PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")
View = tuple[str, Any, list[list[str]], str | None]


def hyperparameters(values: dict[str, str], defaults: dict[str, str] = DEFAULTS) -> dict[str, Any]:
    """The fields the user changed from the prefilled defaults, as JSON values ("auto" stays text)."""
    chosen: dict[str, Any] = {}
    for key, raw in values.items():
        text = (raw or "").strip()
        if text == defaults[key].strip() or not text:
            continue
        if text == "auto":
            chosen[key] = text
            continue
        try:
            number = float(text)
        except ValueError:
            raise gr.Error(
                f"Hyperparameter {key}: enter a number or 'auto', not {text!r}.", print_exception=False
            ) from None
        chosen[key] = int(number) if number.is_integer() and "." not in text else number
    return chosen


def is_preference_file(path: str | None) -> bool:
    """Whether the chosen file looks like OpenAI's preference JSONL: a ``.jsonl`` whose first
    non-blank line (read up to 1 MiB) is an object with ``input``/``preferred_output``/``non_preferred_output``."""
    if not path or not path.lower().endswith(".jsonl"):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            line = ""
            while not line.strip():
                line = handle.readline(1 << 20)
                if not line:
                    return False
        row = json.loads(line)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and any(key in row for key in PREFERENCE_KEYS)


def offer_methods(path: str | None) -> tuple[Any, Any]:
    """The method for the chosen file (DPO picked, and the choice open, for preference pairs;
    supervised, fixed, for anything else) and whether DPO's fields show."""
    preference = is_preference_file(path)
    return gr.Radio(value=DPO if preference else SUPERVISED, interactive=preference), gr.Row(visible=preference)


def show_dpo_fields(method: str) -> Any:
    return gr.Row(visible=method == DPO)


def job_body(method: str, chosen: dict[str, Any], dpo_values: dict[str, str]) -> dict[str, Any]:
    """The request's hyperparameters part: top-level ``hyperparameters`` for supervised training,
    OpenAI's ``method`` (hyperparameters inside, DPO's changed fields with them) for DPO."""
    if method != DPO:
        return {"hyperparameters": chosen}
    own = hyperparameters(dpo_values, DPO_FIELDS)
    return {"method": {"type": "dpo", "dpo": {"hyperparameters": {**chosen, **own}}}}


async def _poll(api: ApiClient, job_id: str, known: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The job now; its events not seen yet are added to ``known`` (by id), paging back as far as
    needed, so a long job's whole loss curve is kept while each poll reads only the newest page."""
    job = await api.job(job_id)
    after = None
    while True:
        page = await api.job_events(job_id, after)
        new = [e for e in page["data"] if e["id"] not in known]
        known.update((e["id"], e) for e in new)
        if len(new) < len(page["data"]) or not page.get("has_more") or not new:
            return job
        after = new[-1]["id"]


def _view(job: dict[str, Any], events: list[dict[str, Any]]) -> View:
    return progress_html(job), loss_frame(events), eval_rows(job, events), job["id"]


async def watch(session: Session, job_id: str) -> AsyncIterator[View]:
    """Yield the job's view once per poll until it ends; report a cancel or failure in words."""
    known: dict[str, dict[str, Any]] = {}
    async with session.client() as api:
        while True:
            job = await _poll(api, job_id, known)
            yield _view(job, list(known.values()))
            if job["status"] in TERMINAL:
                break
            await asyncio.sleep(POLL_S)
    if job["status"] == "cancelled":
        gr.Warning(f"Job {job_id} was cancelled; nothing was published.")
    elif job["status"] == "failed":
        message = (job.get("error") or {}).get("message") or "unknown error"
        raise gr.Error(f"Job {job_id} failed: {message}", print_exception=False)
    else:
        gr.Info(f"Job {job_id} succeeded: {job.get('fine_tuned_model')} is served now.")


async def start(
    session: Session | None,
    acting: str | None,
    training: str | None,
    validation: str | None,
    name: str,
    model: str | None,
    method: str,
    *values: str,
) -> AsyncIterator[View]:
    session = require(session)
    if not training:
        raise gr.Error("Add a training file (a document, chat JSONL or question,answer CSV).", print_exception=False)
    if not (name or "").strip():
        raise gr.Error("Name the adapter (a-z, 0-9 and '-').", print_exception=False)
    tenant = acting if session.is_admin else None
    chosen = hyperparameters(dict(zip(DEFAULTS, values[: len(DEFAULTS)], strict=True)))
    sent = job_body(method, chosen, dict(zip(DPO_FIELDS, values[len(DEFAULTS) :], strict=True)))
    async with session.client() as api:
        body: dict[str, Any] = {
            "model": model or "base",
            "suffix": name.strip(),
            **sent,
            "training_file": (await api.upload_file(Path(training), tenant))["id"],
        }
        if validation:
            body["validation_file"] = (await api.upload_file(Path(validation), tenant))["id"]
        if tenant:
            body["tenant"] = tenant
        job = await api.create_job(body)
    gr.Info(f"Started {job['id']}.")
    async for view in watch(session, job["id"]):
        yield view


async def rewatch(session: Session | None, job_id: str | None) -> AsyncIterator[View]:
    session = require(session)
    if not job_id or not JOB_ID.match(job_id):
        raise gr.Error("Pick a job from the history first.", print_exception=False)
    async for view in watch(session, job_id):
        yield view


async def cancel(session: Session | None, job_id: str | None) -> str:
    session = require(session)
    if not job_id or not JOB_ID.match(job_id):
        raise gr.Error("There is no job to cancel.", print_exception=False)
    async with session.client() as api:
        job = await api.cancel_job(job_id)
    return progress_html(job)


async def history(session: Session | None) -> tuple[list[list[str]], Any]:
    if session is None:
        return [], gr.Dropdown(choices=[])
    async with session.client() as api:
        jobs = await api.jobs()
    return history_rows(jobs), gr.Dropdown(choices=[j["id"] for j in jobs])


def _fields(defaults: dict[str, str]) -> list[gr.Textbox]:
    return [gr.Textbox(label=key, value=value, min_width=120) for key, value in defaults.items()]


def build_train_tab(session: gr.State, catalog: gr.State, acting: gr.Dropdown) -> None:
    with gr.Tab("Train"):
        with gr.Row():
            training = gr.File(label="Training file", file_types=TRAIN_TYPES, type="filepath")
            validation = gr.File(label="Validation file (optional)", file_types=TRAIN_TYPES, type="filepath")
        with gr.Row():
            name = gr.Textbox(label="Adapter name", placeholder="handbook")
            model = gr.Dropdown(label="Start from", choices=[], interactive=True, allow_custom_value=True)
        with gr.Row():
            method = gr.Radio([SUPERVISED, DPO], value=SUPERVISED, label="Method", interactive=False)
        with gr.Row(visible=False) as dpo_row:
            dpo_fields = _fields(DPO_FIELDS)
        with gr.Row():
            basic = _fields(BASIC)
        with gr.Accordion("Advanced hyperparameters", open=False), gr.Row():
            advanced = _fields(ADVANCED)
        with gr.Row():
            start_button = gr.Button("Start training", variant="primary")
            cancel_button = gr.Button("Cancel job", variant="stop")
        job_id = gr.State(None)
        progress = gr.HTML(progress_html(None), label="Progress")
        evaluation = gr.Dataframe(headers=EVAL_HEADERS, label="Evaluation", interactive=False, value=[])
        loss = gr.LinePlot(
            x="step", y="train_loss", title="Training loss", label="Training loss", value=loss_frame([]), height=260
        )
        with gr.Accordion("History", open=True):
            with gr.Row():
                refresh = gr.Button("Refresh history")
                picked = gr.Dropdown(label="Job", choices=[], interactive=True, allow_custom_value=True)
                watch_button = gr.Button("Watch this job")
            jobs = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, value=[], wrap=True)

    view = [progress, loss, evaluation, job_id]
    catalog.change(model_dropdown, [catalog, model], model, api_visibility="private")
    training.change(offer_methods, training, [method, dpo_row], api_visibility="private")
    method.change(show_dpo_fields, method, dpo_row, api_visibility="private")
    started = start_button.click(
        start,
        [session, acting, training, validation, name, model, method, *basic, *advanced, *dpo_fields],
        view,
        api_name="train",
    )
    watched = watch_button.click(rewatch, [session, picked], view, api_name="watch_job")
    cancel_button.click(cancel, [session, job_id], progress, api_name="cancel_job")
    for event in (started, watched):
        event.then(history, session, [jobs, picked], api_visibility="private").then(
            load_catalog, session, catalog, api_visibility="private"
        )
    gr.on([session.change, refresh.click], history, session, [jobs, picked], api_name="job_history")
