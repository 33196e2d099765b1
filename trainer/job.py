"""One training job, start to finish: documents -> samples -> tokens -> train -> evaluate -> publish.

:class:`JobSpec` is the spec of docs/training-jobs.md. :func:`run_job` runs it and reports
through ``emit`` the protocol's events in order (``status`` validating_files, ``status``
running, ``eval`` before, ``progress`` at most about once a second, ``message``, ``eval`` after,
``succeeded``), and returns the published manifest. On any refusal or failure it emits one
``failed`` event and raises :class:`JobError` (``code``, ``message``); nothing is published
then. Codes: ``invalid_spec``, ``invalid_training_file``, ``invalid_validation_file``,
``invalid_hyperparameters``, ``model_not_found`` (the adapter to continue from does not exist
in this tenant), ``incompatible_model`` (it was trained for another base), ``cancelled``
(``should_stop`` said so; checked between stages and before every step), ``out_of_memory``,
``training_failed`` (e.g. the loss diverged).

Continuing from an adapter (``model`` = ``tenant/name[@version]`` of the same tenant) starts the
LoRA from that version's weights (its rank and targets are kept). With ``validation_files`` the
held-out loss and probes come from them; otherwise a held-out split of the training samples is
made (``hyperparameters.heldout_fraction``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapters.base_model import load_tokenizer, spec_for
from adapters.execution_plan import ExecutionPlan
from adapters.ids import InvalidId, parse_model_id, validate_adapter_name, validate_tenant_id
from adapters.manifest import AdapterManifest
from adapters.store import AdapterNotFound, AdapterStore
from trainer.documents import DocumentError, load_records
from trainer.hyperparameters import HyperparameterError, Hyperparameters, parse
from trainer.samples import SampleSet, build_samples

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]


class JobError(RuntimeError):
    """Why a job failed: a protocol ``code`` and a message fit for the job's owner."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InputFile:
    path: Path
    """Where the file is on disk."""
    filename: str
    """The name it was uploaded under (decides the format, appears in messages)."""


@dataclass(frozen=True)
class JobSpec:
    """A job as the server (or the CLI) describes it; see docs/training-jobs.md."""

    job_id: str
    tenant: str
    suffix: str
    base_model_dir: Path
    adapters_dir: Path
    training_files: tuple[InputFile, ...]
    model: str = "base"
    validation_files: tuple[InputFile, ...] = ()
    hyperparameters: Mapping[str, Any] | None = None
    seed: int = 0
    system_prompt: str | None = None
    work_dir: Path | None = None
    device: str | None = None
    execution_plan: str | None = None
    """The plan the base computes in (``nf4-bf16``, ``dense-fp32``, ...): the server's own, so
    that training and serving agree; None: choose as the server would (``plan_cache``)."""
    plan_cache: Path | None = None
    """Directory of the measured-plan cache (the data directory) when ``execution_plan`` is None."""
    max_seconds_ceiling: float | None = None
    """The operator's ceiling on the training loop's budget (``auto`` budgets are held to it too)."""

    @classmethod
    def from_dict(cls, data: object) -> JobSpec:
        """Build from the worker's JSON spec; :class:`JobError` ``invalid_spec`` if malformed."""
        def files(key: str) -> tuple[InputFile, ...]:
            items = data.get(key) or []
            if not isinstance(items, list):
                raise TypeError(f"{key} must be a list")
            return tuple(InputFile(Path(f["path"]), str(f["filename"])) for f in items)

        try:
            if not isinstance(data, dict):
                raise TypeError("the spec must be a JSON object")
            seed = data.get("seed", 0)
            if type(seed) is not int:
                raise TypeError("seed must be an integer")
            return cls(
                job_id=str(data["job_id"]),
                tenant=validate_tenant_id(data["tenant"]),
                suffix=validate_adapter_name(data["suffix"]),
                model=str(data.get("model") or "base"),
                base_model_dir=Path(data["base_model_dir"]),
                adapters_dir=Path(data["adapters_dir"]),
                training_files=files("training_files"),
                validation_files=files("validation_files"),
                hyperparameters=data.get("hyperparameters") or {},
                seed=seed,
                system_prompt=data.get("system_prompt") or None,
                work_dir=Path(data["work_dir"]) if data.get("work_dir") else None,
                device=data.get("device") or None,
                execution_plan=_plan_name(data.get("execution_plan")),
                plan_cache=Path(data["plan_cache"]) if data.get("plan_cache") else None,
                max_seconds_ceiling=_positive(data.get("max_seconds_ceiling")),
            )
        except (KeyError, TypeError, ValueError, InvalidId) as exc:
            raise JobError("invalid_spec", f"Invalid job spec: {exc}") from None


def _positive(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TypeError("max_seconds_ceiling must be a positive number")
    return float(value)


def _plan_name(value: object) -> str | None:
    if value is None:
        return None
    return ExecutionPlan.from_name(str(value)).name  # ValueError names the valid plans


def _records(files: tuple[InputFile, ...], code: str) -> list:
    records: list = []
    for file in files:
        try:
            records += load_records(file.path, file.filename)
        except DocumentError as exc:
            raise JobError(code, exc.message) from None
        except OSError as exc:
            raise JobError(code, f"{file.filename}: could not be read ({exc.strerror or exc}).") from None
    return records


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
        held = build_samples(_records(spec.validation_files, "invalid_validation_file"), spec.system_prompt, spec.seed, 0.0)
        samples.heldout = held.train
        samples.probes = held.probes or samples.probes
    if not samples.train:
        raise JobError("invalid_training_file", "The training files yield no training samples.")
    return samples


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


def run_job(spec: JobSpec, emit: Emit, should_stop: Callable[[], bool] = lambda: False) -> AdapterManifest:
    """Run ``spec``; emit the protocol events; return the published manifest or raise :class:`JobError`."""
    try:
        return _run(spec, emit, should_stop)
    except JobError as exc:
        emit({"type": "failed", "code": exc.code, "message": exc.message})
        raise
    except MemoryError:
        message = "The trainer ran out of memory; try a smaller max_seq_tokens or lora_rank."
        emit({"type": "failed", "code": "out_of_memory", "message": message})
        raise JobError("out_of_memory", message) from None


def _check_stop(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise JobError("cancelled", "The job was cancelled; nothing was published.")


def _run(spec: JobSpec, emit: Emit, should_stop: Callable[[], bool]) -> AdapterManifest:
    import torch

    from trainer.evaluate import eval_loss, probe_recall
    from trainer.packing import pack
    from trainer.publish import publish_adapter
    from trainer.qlora import plan, prepare_model, train
    from trainer.tokenize import encode

    emit({"type": "status", "status": "validating_files", "message": f"Reading {len(spec.training_files)} file(s)."})
    try:
        hp = parse(dict(spec.hyperparameters or {}))
    except HyperparameterError as exc:
        raise JobError("invalid_hyperparameters", exc.message) from None
    store = AdapterStore(spec.adapters_dir)
    init_path, continued_from = _init_adapter(spec, store)
    samples = _samples(spec, hp)
    digest = data_sha256(spec.training_files)
    _check_stop(should_stop)
    emit({"type": "status", "status": "running", "message": f"{len(samples.train)} training samples; loading the base model."})
    try:
        execution = ExecutionPlan.from_name(spec.execution_plan, "the server's plan") if spec.execution_plan else None
        prepared = prepare_model(spec.base_model_dir, hp, device=spec.device, init_adapter=init_path,
                                 plan=execution, plan_cache=spec.plan_cache)
        hp = hp.within(spec.max_seconds_ceiling, prepared.device.type)
        budget = min(hp.row_tokens(prepared.device.type), prepared.context_length)
        rows = pack([encode(prepared.tokenizer, s.messages) for s in samples.train], budget, spec.seed)
        held_rows = pack([encode(prepared.tokenizer, s.messages) for s in samples.heldout], budget, spec.seed)
        resolved = plan(prepared, rows, hp)
        emit({"type": "message", "level": "info", "message": f"{len(rows)} packed rows of up to {budget} tokens; "
              f"plan: {resolved.n_epochs} epochs, {resolved.total_steps} steps, learning rate {resolved.learning_rate:.2e}."})
        _check_stop(should_stop)
        before = (eval_loss(prepared, held_rows), probe_recall(prepared, samples.probes, spec.system_prompt)[0])
        emit({"type": "eval", "stage": "before", "eval_loss": before[0], "probe_recall": before[1]})
        last = [0.0]

        def progress(event: dict) -> None:
            if time.monotonic() - last[0] >= 1.0 or event["step"] == event["total_steps"]:
                last[0] = time.monotonic()
                emit({"type": "progress", **event})

        result = train(prepared, rows, hp, seed=spec.seed, on_progress=progress, should_stop=should_stop)
        _check_stop(should_stop)
        after_recall, answers = probe_recall(prepared, samples.probes, spec.system_prompt)
        after = (eval_loss(prepared, held_rows), after_recall)
        emit({"type": "eval", "stage": "after", "eval_loss": after[0], "probe_recall": after[1]})
        _check_stop(should_stop)
        metrics = {
            "eval_loss_before": before[0], "eval_loss_after": after[0],
            "probe_recall_before": before[1], "probe_recall_after": after[1],
            "train_loss": result.final_loss, "steps": result.steps, "train_seconds": round(result.seconds, 1),
        }
        extra = {
            "job_id": spec.job_id, "data_sha256": digest, "hyperparameters": hp.to_dict(),
            "resolved_hyperparameters": asdict(resolved), "seed": spec.seed, "samples": samples.stats,
            "trained_tokens": result.trained_tokens, "base_model": prepared.spec.name,
            "continued_from": continued_from, "probe_answers": answers, "execution_plan": prepared.plan.name,
        }
        manifest = publish_adapter(prepared, store, spec.tenant, spec.suffix, metrics=metrics, extra=extra)
    except torch.OutOfMemoryError:
        raise MemoryError from None
    except FloatingPointError as exc:
        raise JobError("training_failed", str(exc)) from None
    emit({"type": "succeeded", "fine_tuned_model": manifest.model_id, "trained_tokens": result.trained_tokens,
          "metrics": manifest.metrics})
    return manifest
