"""One training job, start to finish: documents -> samples -> tokens -> train -> evaluate -> publish.

:func:`run_job` runs an :class:`adapters.job_spec.JobSpec` and reports through ``emit`` (each
event's JSON object, :mod:`adapters.worker_events`) the protocol's events in order (``status``
validating_files, ``status`` running, ``message`` with the plan, ``eval`` before, ``progress`` at
most about once a second and at the last step, ``eval`` after, ``succeeded``), and returns the
published manifest. On any refusal or failure it emits one ``failed`` event and raises
:class:`JobError` (``code``, ``message``); nothing is published then. Codes:
``invalid_training_file``, ``invalid_validation_file``, ``invalid_hyperparameters``,
``model_not_found`` (the adapter to continue from does not exist in this tenant),
``incompatible_model`` (it was trained for another base), ``cancelled`` (``should_stop`` said
so; checked between stages and before every step), ``out_of_memory``, ``training_failed``
(e.g. the loss diverged). A malformed spec never gets here: building or reading a
:class:`JobSpec` raises :class:`adapters.job_spec.InvalidJobSpec` (``invalid_spec``).

The named steps: :func:`_read_inputs` (hyperparameters, the method, the adapter to continue
from, the data; every input check before a model loads), :func:`_load` (base + LoRA, packed
rows, the plan), :func:`_evaluate` (before and after), :func:`_train`, :func:`_publish`. What
the data is, what a step minimises and what is measured is the job's :class:`trainer.recipe.Recipe`,
by its training method (``spec.method``, :mod:`adapters.training_method`): supervised
(:mod:`trainer.supervised_recipe`: chat samples, held-out loss and probe recall) or DPO
(:mod:`trainer.preference_recipe`: preference pairs of OpenAI's preference JSONL, held-out DPO
loss, preference accuracy and reward margin; the reference policy is the model the job starts
from, frozen).

A grounded job (``spec.grounded``: its tenant's retrieval is on) gives the supervised recipe the
training documents' passages, and about half its questions are asked with them as chat asks them
(:mod:`trainer.raft`). The recall probes are held-out questions only (never one training sees),
asked of the adapter alone.

Continuing from an adapter (``model`` = ``tenant/name[@version]`` of the same tenant) starts the
LoRA from that version's weights (its rank and targets are kept). With ``validation_files`` the
held-out loss and probes (pairs, for DPO) come from them; otherwise a held-out split of the
training data is made (``hyperparameters.heldout_fraction``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from adapters.base_model import load_tokenizer, spec_for
from adapters.execution_plan import ExecutionPlan
from adapters.hyperparameters import HyperparameterError, Hyperparameters, Resolved, parse
from adapters.ids import InvalidId, parse_model_id
from adapters.job_spec import InputFile, JobSpec
from adapters.manifest import AdapterManifest
from adapters.store import AdapterNotFound, AdapterStore
from adapters.training_method import TrainingMethod
from adapters.worker_events import (
    FailedEvent,
    MessageEvent,
    ProgressEvent,
    StatusEvent,
    SucceededEvent,
    WorkerEvent,
)
from trainer.documents import DocumentError, load_pairs, load_records, read_document
from trainer.packing import PackedBatch
from trainer.passages import document_passages
from trainer.preference_data import PreferencePair
from trainer.preference_recipe import PreferenceRecipe, split_pairs
from trainer.publish import publish_adapter
from trainer.qlora import Prepared, TrainResult, plan, prepare_model, train
from trainer.recipe import Evaluation, Recipe
from trainer.records import Record
from trainer.samples import SampleSet, build_samples, heldout_probes
from trainer.supervised_recipe import SupervisedRecipe

__all__ = ["Emit", "InputFile", "JobError", "JobSpec", "data_sha256", "run_job"]
log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
"""Receives each event's JSON object (``WorkerEvent.to_dict()``)."""
Send = Callable[[WorkerEvent], None]
T = TypeVar("T")
ShouldStop = Callable[[], bool]


class JobError(RuntimeError):
    """Why a job failed: a protocol ``code`` and a message fit for the job's owner.

    An exception the worker turns into its ``failed`` event; the server's record of a failed job
    is a different thing, ``server.jobs.job_store.JobFailure``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Inputs:
    """Everything a job reads before it loads a model, every input check passed."""

    hp: Hyperparameters
    method: TrainingMethod
    store: AdapterStore
    init_path: Path | None
    """The stored adapter version to continue from, if any (with DPO, the reference too)."""
    continued_from: str | None
    recipe: Recipe
    digest: str
    """:func:`data_sha256` of the training files."""


@dataclass(frozen=True)
class _Loaded:
    """The base with its LoRA on the device, the data packed for it and the resolved plan."""

    prepared: Prepared
    hp: Hyperparameters
    """The job's hyperparameters held to the operator's ceiling."""
    budget: int
    """Tokens in the longest packed row (the row budget; more for rows that hold passages)."""
    rows: list[PackedBatch]
    held_rows: list[PackedBatch]
    resolved: Resolved


def _read(files: tuple[InputFile, ...], code: str, loader: Callable[[Path, str], list[T]]) -> list[T]:
    """Every file's records (or pairs) by ``loader``; a file that cannot be used is a :class:`JobError`."""
    items: list[T] = []
    for file in files:
        try:
            items += loader(file.path, file.filename)
        except DocumentError as exc:
            raise JobError(code, exc.message) from None
        except OSError as exc:
            raise JobError(code, f"{file.filename}: could not be read ({exc.strerror or exc}).") from None
    return items


def _records(files: tuple[InputFile, ...], code: str) -> list[Record]:
    return _read(files, code, load_records)


def data_sha256(files: tuple[InputFile, ...]) -> str:
    """sha256 over the training files' names and contents, in order."""
    digest = hashlib.sha256()
    for file in files:
        with open(file.path, "rb") as f:
            digest.update(f"{file.filename}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode())
    return digest.hexdigest()


def _samples(spec: JobSpec, hp: Hyperparameters) -> SampleSet:
    if not spec.training_files:
        raise JobError("invalid_training_file", "A job needs at least one training file.")
    records = _records(spec.training_files, "invalid_training_file")
    fraction = 0.0 if spec.validation_files else hp.heldout_fraction
    samples = build_samples(records, spec.system_prompt, spec.seed, heldout_fraction=fraction)
    if spec.validation_files:
        validation = _records(spec.validation_files, "invalid_validation_file")
        held = build_samples(validation, spec.system_prompt, spec.seed, 0.0)
        samples.heldout = held.train
        samples.probes = heldout_probes(held.train)
    if not samples.train:
        raise JobError("invalid_training_file", "The training files yield no training samples.")
    return samples


def _passages(files: tuple[InputFile, ...]) -> list[tuple[str, str]]:
    """The training documents' passages as retrieval cuts them (``(heading, text)``)."""
    return [(p["heading"], p["text"]) for f in files for p in document_passages(read_document(f.path, f.filename))]


def _preferences(spec: JobSpec, hp: Hyperparameters, method: TrainingMethod) -> PreferenceRecipe:
    """A DPO job's recipe: its pairs, held out from the validation files or split off the training files."""
    if not spec.training_files:
        raise JobError("invalid_training_file", "A job needs at least one training file.")
    pairs: list[PreferencePair] = _read(spec.training_files, "invalid_training_file", load_pairs)
    if spec.validation_files:
        train, heldout = pairs, _read(spec.validation_files, "invalid_validation_file", load_pairs)
    else:
        train, heldout = split_pairs(pairs, hp.heldout_fraction, spec.seed)
    assert method.beta is not None and method.sft_weight is not None  # a DPO method always has both
    return PreferenceRecipe(train, heldout, spec.system_prompt, method.beta, method.sft_weight)


def _init_adapter(spec: JobSpec, store: AdapterStore) -> tuple[Path | None, str | None]:
    """The stored adapter to continue from (its directory and model id), after checking its base."""
    try:
        ref = parse_model_id(spec.model)
    except InvalidId as exc:
        raise JobError("model_not_found", str(exc)) from None
    if ref is None:
        return None, None
    missing = f"Model '{spec.model}' not found: use 'base' or one of your adapters."
    if ref.tenant != spec.tenant:
        raise JobError("model_not_found", missing)
    try:
        resolved = store.resolve(ref)
    except (AdapterNotFound, InvalidId):
        raise JobError("model_not_found", missing) from None
    base_hash = spec_for(spec.base_model_dir, load_tokenizer(spec.base_model_dir)).hash
    if resolved.manifest.base_spec_hash != base_hash:
        raise JobError("incompatible_model", f"Adapter '{spec.model}' was trained for another base model.")
    return resolved.path, resolved.manifest.model_id


def run_job(spec: JobSpec, emit: Emit, should_stop: ShouldStop = lambda: False) -> AdapterManifest:
    """Run ``spec``; emit the protocol events; return the published manifest or raise :class:`JobError`."""

    def send(event: WorkerEvent) -> None:
        emit(event.to_dict())

    try:
        return _run(spec, send, should_stop)
    except JobError as exc:
        send(FailedEvent(exc.code, exc.message))
        raise
    except MemoryError:
        message = "The trainer ran out of memory; try a smaller max_seq_tokens or lora_rank."
        send(FailedEvent("out_of_memory", message))
        raise JobError("out_of_memory", message) from None


def _check_stop(should_stop: ShouldStop) -> None:
    if should_stop():
        raise JobError("cancelled", "The job was cancelled; nothing was published.")


def _run(spec: JobSpec, send: Send, should_stop: ShouldStop) -> AdapterManifest:
    send(StatusEvent("validating_files", f"Reading {len(spec.training_files)} file(s)."))
    inputs = _read_inputs(spec)
    _check_stop(should_stop)
    send(StatusEvent("running", f"{inputs.recipe.summary()}; loading the base model."))
    try:
        loaded = _load(spec, inputs)
        send(
            MessageEvent(
                f"{len(loaded.rows)} packed rows of up to {loaded.budget} tokens; plan: "
                f"{loaded.resolved.n_epochs} epochs, {loaded.resolved.total_steps} steps, "
                f"learning rate {loaded.resolved.learning_rate:.2e}."
            )
        )
        _check_stop(should_stop)
        before = _evaluate(loaded, inputs.recipe)
        send(before.event("before"))
        result = _train(spec, loaded, inputs.recipe, send, should_stop)
        _check_stop(should_stop)
        after = _evaluate(loaded, inputs.recipe)
        send(after.event("after"))
        _check_stop(should_stop)
        manifest = _publish(spec, inputs, loaded, before, after, result)
    except torch.OutOfMemoryError:
        raise MemoryError from None
    except FloatingPointError as exc:
        raise JobError("training_failed", str(exc)) from None
    send(SucceededEvent(manifest.model_id, result.trained_tokens, manifest.metrics))
    return manifest


def _read_inputs(spec: JobSpec) -> _Inputs:
    """Step 1: the hyperparameters, the method, the adapter to continue from and the data, all checked."""
    try:
        hp = parse(dict(spec.hyperparameters))
    except HyperparameterError as exc:
        raise JobError("invalid_hyperparameters", exc.message) from None
    method = spec.training_method
    store = AdapterStore(spec.adapters_dir)
    init_path, continued_from = _init_adapter(spec, store)
    if method.is_dpo:
        recipe: Recipe = _preferences(spec, hp, method)
    else:
        passages = _passages(spec.training_files) if spec.grounded else None
        recipe = SupervisedRecipe(_samples(spec, hp), spec.system_prompt, passages)
    return _Inputs(hp, method, store, init_path, continued_from, recipe, data_sha256(spec.training_files))


def _load(spec: JobSpec, inputs: _Inputs) -> _Loaded:
    """Step 2: the base (in the server's execution plan, if named) with its LoRA, the data
    tokenized and packed into rows, and the plan of epochs and steps."""
    execution = ExecutionPlan.from_name(spec.execution_plan, "the server's plan") if spec.execution_plan else None
    prepared = prepare_model(
        spec.base_model_dir,
        inputs.hp,
        device=spec.device,
        init_adapter=inputs.init_path,
        plan=execution,
        plan_cache=spec.plan_cache,
    )
    hp = inputs.hp.within(spec.max_seconds_ceiling, prepared.device.type)
    budget = min(hp.row_tokens(prepared.device.type), prepared.context_length)
    rows, held_rows = inputs.recipe.rows(prepared, budget, spec.seed)
    resolved = plan(prepared, rows, hp, inputs.recipe.objective.preference)
    longest = max((row.tokens for row in rows), default=budget)
    return _Loaded(prepared, hp, longest, list(rows), list(held_rows), resolved)


def _evaluate(loaded: _Loaded, recipe: Recipe) -> Evaluation:
    """Steps 3 and 5: the recipe's held-out measures (with the answers given)."""
    return recipe.evaluate(loaded.prepared, loaded.held_rows)


def _train(spec: JobSpec, loaded: _Loaded, recipe: Recipe, send: Send, should_stop: ShouldStop) -> TrainResult:
    """Step 4: the training loop, reporting ``progress`` at most about once a second and at the end."""
    last = 0.0

    def progress(values: dict[str, Any]) -> None:
        nonlocal last
        if time.monotonic() - last >= 1.0 or values["step"] == values["total_steps"]:
            last = time.monotonic()
            send(ProgressEvent.from_fields(values))

    return train(
        loaded.prepared,
        loaded.rows,
        loaded.hp,
        seed=spec.seed,
        on_progress=progress,
        should_stop=should_stop,
        objective=recipe.objective,
    )


def _publish(
    spec: JobSpec, inputs: _Inputs, loaded: _Loaded, before: Evaluation, after: Evaluation, result: TrainResult
) -> AdapterManifest:
    """Step 6: the adapter as a new version of ``<tenant>/<suffix>``, with what made it."""
    metrics = {
        **before.metrics("before"),
        **after.metrics("after"),
        "train_loss": result.final_loss,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
    }
    extra = {
        "job_id": spec.job_id,
        "data_sha256": inputs.digest,
        "hyperparameters": loaded.hp.to_dict(),
        "method": inputs.method.to_dict(),
        "resolved_hyperparameters": asdict(loaded.resolved),
        "seed": spec.seed,
        "samples": inputs.recipe.stats,
        "trained_tokens": result.trained_tokens,
        "base_model": loaded.prepared.spec.name,
        "continued_from": inputs.continued_from,
        **inputs.recipe.extra(before, after),
        "execution_plan": loaded.prepared.plan.name,
    }
    return publish_adapter(loaded.prepared, inputs.store, spec.tenant, spec.suffix, metrics=metrics, extra=extra)
