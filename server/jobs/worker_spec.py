"""The spec a training worker gets for one job (``<data>/jobs/<id>/spec.json``; docs/training-jobs.md).

Contract: :func:`worker_spec` is the JSON object ``trainer.job.JobSpec.from_dict`` reads: the
job's identity and hyperparameters, absolute paths (base model, adapter store, the job's files,
its work directory), the tenant's system prompt (training samples get the prompt the tenant's
chats get), the execution plan the server serves with (None: the worker measures its own) and
the server's ceiling on the training loop's duration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.jobs.job_store import Job
from server.jobs.training_files import FileStore
from server.settings import Settings


def worker_spec(job: Job, files: FileStore, settings: Settings, model_dir: Path, work_dir: Path, *,
                system_prompt: str | None, plan_name: str | None) -> dict[str, Any]:
    """The spec of ``job`` (its files must exist: the runner checks just before)."""

    def file_entry(file_id: str) -> dict[str, str]:
        stored = files.get(file_id, job.tenant)
        assert stored is not None
        return {"path": str(files.path(stored).resolve()), "filename": stored.filename}

    return {
        "job_id": job.id,
        "tenant": job.tenant,
        "suffix": job.suffix,
        "model": job.model,
        "base_model_dir": str(Path(model_dir).resolve()),
        "adapters_dir": str(settings.adapters_dir.resolve()),
        "training_files": [file_entry(job.training_file)],
        "validation_files": [file_entry(job.validation_file)] if job.validation_file else [],
        "hyperparameters": job.hyperparameters,
        "seed": job.seed,
        "system_prompt": system_prompt,
        "work_dir": str(work_dir.resolve()),
        "device": settings.device,
        "execution_plan": plan_name,
        "plan_cache": str(settings.data.resolve()),
        "max_seconds_ceiling": settings.max_job_seconds,
    }
