"""The spec a training worker gets for one job (``<data>/jobs/<id>/spec.json``; docs/training-jobs.md).

Contract: :func:`worker_spec` fills :meth:`adapters.job_spec.JobSpec.build` (the one builder
of a spec; ``swaplora train`` calls it too) from a stored job: the job's identity and
hyperparameters, absolute paths (base model, adapter store, the job's files, its work
directory), the training method, the tenant's system prompt (training samples get the prompt the tenant's chats get),
the execution plan the server serves with (None: the worker measures its own) and the server's
ceiling on the training loop's duration. It raises :class:`adapters.job_spec.InvalidJobSpec`
for a job that cannot make a valid spec, and ``LookupError`` for a file that is gone.
"""

from __future__ import annotations

from pathlib import Path

from adapters.job_spec import InputFile, JobSpec
from server.jobs.job_store import Job
from server.jobs.training_files import FileStore
from server.settings import Settings


def worker_spec(
    job: Job,
    files: FileStore,
    settings: Settings,
    model_dir: Path,
    work_dir: Path,
    *,
    system_prompt: str | None,
    plan_name: str | None,
    grounded: bool = False,
) -> JobSpec:
    """The spec of ``job`` (its files must exist: the runner checks just before)."""

    def input_file(file_id: str) -> InputFile:
        stored = files.get(file_id, job.tenant)
        if stored is None:
            raise LookupError(f"file {file_id!r} of {job.id} is gone")
        return InputFile(files.path(stored), stored.filename)

    return JobSpec.build(
        job_id=job.id,
        tenant=job.tenant,
        suffix=job.suffix,
        model=job.model,
        base_model_dir=model_dir,
        adapters_dir=settings.adapters_dir,
        training_files=[input_file(job.training_file)],
        validation_files=[input_file(job.validation_file)] if job.validation_file else [],
        hyperparameters=job.hyperparameters,
        seed=job.seed,
        system_prompt=system_prompt,
        grounded=grounded,
        work_dir=work_dir,
        device=settings.device,
        execution_plan=plan_name,
        plan_cache=settings.data,
        max_seconds_ceiling=settings.max_job_seconds,
        method=job.method,
    )
