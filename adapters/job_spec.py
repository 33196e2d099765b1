"""The job spec: what a training worker is told to do, built once by whoever starts the job.

Contract:

- :class:`JobSpec` is the JSON object of docs/training-jobs.md (``<data>/jobs/<id>/spec.json``
  for ``python -m trainer.worker``), frozen. :meth:`JobSpec.build` is the one way to make one:
  the server (:func:`server.jobs.worker_spec.worker_spec`) and ``swaplora train`` both call it;
  it makes every path absolute and validates every field. Construction validates too, so a
  :class:`JobSpec` that exists is well-formed: tenant id and adapter name syntax
  (:mod:`adapters.ids`), ``seed`` an integer, ``hyperparameters`` an object (its values are
  checked by the trainer against :mod:`adapters.hyperparameters`, which reports
  ``invalid_hyperparameters``, not ``invalid_spec``), ``method`` a training method's settings
  (:mod:`adapters.training_method`: ``{"type": "supervised"}`` or ``{"type": "dpo", "beta":
  0.1}``), ``execution_plan`` a known plan name, ``max_seconds_ceiling`` a positive number.
- :meth:`JobSpec.to_dict` is the JSON object (every key present, None as null, paths as
  strings); :meth:`JobSpec.from_dict` reads one back. Both raise :class:`InvalidJobSpec`
  (``code`` ``invalid_spec``, a message naming the field) for anything malformed; nothing else
  escapes them.
- ``execution_plan`` names are checked with :mod:`adapters.execution_plan`, which imports torch:
  that import happens only when a spec names a plan, so reading this module stays light.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from adapters.ids import InvalidId, validate_adapter_name, validate_tenant_id
from adapters.training_method import MethodError, TrainingMethod


class InvalidJobSpec(ValueError):
    """A job spec that is not well-formed; the worker reports it as ``failed`` / ``invalid_spec``."""

    code = "invalid_spec"

    def __init__(self, reason: str) -> None:
        self.message = f"Invalid job spec: {reason}"
        super().__init__(self.message)


@dataclass(frozen=True)
class InputFile:
    """One training or validation file of a job."""

    path: Path
    """Where the file is on disk (absolute once built)."""
    filename: str
    """The name it was uploaded under (decides the format, appears in messages)."""

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "filename": self.filename}

    @classmethod
    def from_dict(cls, data: object) -> InputFile:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("path"), str)
            or not isinstance(data.get("filename"), str)
        ):
            raise InvalidJobSpec(f"a file must be {{'path': str, 'filename': str}}, got {data!r:.200}")
        return cls(Path(data["path"]), data["filename"])


@dataclass(frozen=True)
class JobSpec:
    """A job as the server (or the CLI) describes it; see docs/training-jobs.md."""

    job_id: str
    tenant: str
    suffix: str
    """The adapter name the job publishes a new version of: ``<tenant>/<suffix>``."""
    base_model_dir: Path
    adapters_dir: Path
    training_files: tuple[InputFile, ...]
    model: str = "base"
    """``base``, or an adapter id of the same tenant (``t/n`` or ``t/n@v``) to continue from."""
    validation_files: tuple[InputFile, ...] = ()
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """The caller's hyperparameters as sent (the server has normalised them; the CLI has not)."""
    seed: int = 0
    system_prompt: str | None = None
    """The tenant's system prompt, applied to training samples exactly as at chat time."""
    work_dir: Path | None = None
    """A directory the job owns (checkpoints, scratch); None: the worker uses none."""
    device: str | None = None
    """``cpu``, ``cuda`` or None (cuda when present, else cpu)."""
    execution_plan: str | None = None
    """The plan the base computes in (``nf4-bf16``, ``dense-fp32``, ...): the server's own, so
    that training and serving agree; None: choose as the server would (``plan_cache``)."""
    plan_cache: Path | None = None
    """Directory of the measured-plan cache (the data directory) when ``execution_plan`` is None."""
    max_seconds_ceiling: float | None = None
    """The operator's ceiling on the training loop's budget (``auto`` budgets are held to it too)."""
    grounded: bool = False
    """Train for retrieval (RAFT, :mod:`trainer.raft`): questions carry passages of the training
    documents in the chat-time template. The server sets it when the tenant's retrieval is on."""
    method: Mapping[str, Any] = field(default_factory=lambda: {"type": "supervised"})
    """The training method's settings (:meth:`adapters.training_method.TrainingMethod.to_dict`);
    :attr:`training_method` reads them."""

    @property
    def training_method(self) -> TrainingMethod:
        """:attr:`method` read (construction has checked it)."""
        return TrainingMethod.from_dict(dict(self.method))

    def __post_init__(self) -> None:
        try:
            validate_tenant_id(self.tenant)
            validate_adapter_name(self.suffix)
        except InvalidId as exc:
            raise InvalidJobSpec(str(exc)) from None
        _require(isinstance(self.job_id, str) and bool(self.job_id), "job_id must be a non-empty string")
        _require(isinstance(self.model, str) and bool(self.model), "model must be a non-empty string")
        _require(type(self.seed) is int, "seed must be an integer")
        _require(isinstance(self.hyperparameters, Mapping), "hyperparameters must be an object")
        _require(
            all(isinstance(f, InputFile) for f in (*self.training_files, *self.validation_files)),
            "training_files and validation_files must be lists of files",
        )
        for name in ("system_prompt", "device", "execution_plan"):
            value = getattr(self, name)
            _require(value is None or isinstance(value, str), f"{name} must be a string or null")
        ceiling = self.max_seconds_ceiling
        _require(
            ceiling is None or (isinstance(ceiling, int | float) and not isinstance(ceiling, bool) and ceiling > 0),
            "max_seconds_ceiling must be a positive number",
        )
        _require(type(self.grounded) is bool, "grounded must be true or false")
        _require(isinstance(self.method, Mapping), "method must be an object")
        try:
            TrainingMethod.from_dict(dict(self.method))
        except MethodError as exc:
            raise InvalidJobSpec(exc.message) from None
        if self.execution_plan is not None:
            from adapters.execution_plan import ExecutionPlan  # imports torch: only when a plan is named

            try:
                ExecutionPlan.from_name(self.execution_plan)
            except ValueError as exc:  # names the valid plans
                raise InvalidJobSpec(str(exc)) from None

    @classmethod
    def build(
        cls,
        *,
        job_id: str,
        tenant: str,
        suffix: str,
        base_model_dir: Path | str,
        adapters_dir: Path | str,
        training_files: Iterable[InputFile],
        model: str = "base",
        validation_files: Iterable[InputFile] = (),
        hyperparameters: Mapping[str, Any] | None = None,
        seed: int = 0,
        system_prompt: str | None = None,
        work_dir: Path | str | None = None,
        device: str | None = None,
        execution_plan: str | None = None,
        plan_cache: Path | str | None = None,
        max_seconds_ceiling: float | None = None,
        method: Mapping[str, Any] | None = None,
        grounded: bool = False,
    ) -> JobSpec:
        """The spec, every path made absolute (the worker runs elsewhere); :class:`InvalidJobSpec`
        if a field is malformed."""

        def absolute(files: Iterable[InputFile]) -> tuple[InputFile, ...]:
            return tuple(InputFile(_absolute(f.path), f.filename) for f in files)

        return cls(
            job_id=job_id,
            tenant=tenant,
            suffix=suffix,
            model=model or "base",
            base_model_dir=_absolute(base_model_dir),
            adapters_dir=_absolute(adapters_dir),
            training_files=absolute(training_files),
            validation_files=absolute(validation_files),
            hyperparameters=dict(hyperparameters or {}),
            seed=seed,
            system_prompt=system_prompt or None,
            work_dir=_absolute(work_dir) if work_dir else None,
            device=device or None,
            execution_plan=execution_plan,
            plan_cache=_absolute(plan_cache) if plan_cache else None,
            max_seconds_ceiling=None if max_seconds_ceiling is None else _number(max_seconds_ceiling),
            method=_method(method),
            grounded=grounded,
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec's JSON object: every key, None as null, paths as strings."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif f.name in ("training_files", "validation_files"):
                value = [file.to_dict() for file in value]
            elif f.name in ("hyperparameters", "method"):
                value = dict(value)
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: object) -> JobSpec:
        """Read a spec's JSON object (as :meth:`to_dict` writes it); :class:`InvalidJobSpec` if malformed."""
        if not isinstance(data, dict):
            raise InvalidJobSpec("the spec must be a JSON object")
        missing = [k for k in ("job_id", "tenant", "suffix", "base_model_dir", "adapters_dir") if k not in data]
        if missing:
            raise InvalidJobSpec(f"missing {', '.join(missing)}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidJobSpec(f"unknown key(s) {', '.join(map(repr, unknown))}")
        for key in ("base_model_dir", "adapters_dir", "work_dir", "plan_cache"):
            _require(data.get(key) is None or isinstance(data[key], str), f"{key} must be a path string")
        return cls.build(
            job_id=data["job_id"],
            tenant=data["tenant"],
            suffix=data["suffix"],
            base_model_dir=data["base_model_dir"],
            adapters_dir=data["adapters_dir"],
            training_files=_files(data.get("training_files"), "training_files"),
            validation_files=_files(data.get("validation_files"), "validation_files"),
            model=data.get("model") or "base",
            hyperparameters=_object(data.get("hyperparameters")),
            seed=data.get("seed", 0),
            system_prompt=data.get("system_prompt"),
            work_dir=data.get("work_dir"),
            device=data.get("device"),
            execution_plan=data.get("execution_plan"),
            plan_cache=data.get("plan_cache"),
            max_seconds_ceiling=data.get("max_seconds_ceiling"),
            method=data.get("method"),
            grounded=data.get("grounded", False),
        )


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise InvalidJobSpec(reason)


def _absolute(path: Path | str) -> Path:
    return Path(path).resolve()


def _number(value: object) -> float:
    _require(
        isinstance(value, int | float) and not isinstance(value, bool), "max_seconds_ceiling must be a positive number"
    )
    return float(value)  # type: ignore[arg-type]


def _object(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidJobSpec("hyperparameters must be an object")
    return value


def _method(value: object) -> Mapping[str, Any]:
    if value is None:
        return {"type": "supervised"}
    if not isinstance(value, Mapping):
        raise InvalidJobSpec("method must be an object")
    return dict(value)


def _files(value: object, key: str) -> tuple[InputFile, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidJobSpec(f"{key} must be a list")
    return tuple(InputFile.from_dict(item) for item in value)
