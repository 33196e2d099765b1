"""A job's training method: OpenAI's ``method`` object, supervised fine-tuning or DPO.

Contract:

- :func:`parse_method` reads a job request's ``method`` and top-level ``hyperparameters`` as
  OpenAI's API takes them: ``method`` absent or ``{"type": "supervised", "supervised":
  {"hyperparameters": {...}}}`` or ``{"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1,
  ...}}}``. The method's hyperparameters are the usual ones (:mod:`adapters.hyperparameters`)
  plus, for DPO, ``beta`` (``"auto"`` = :data:`DEFAULT_BETA`, else a number above 0 and at most
  :data:`MAX_BETA`). The top-level ``hyperparameters`` (OpenAI's older form) is the same as the
  method's; giving both is an error. It returns the :class:`TrainingMethod` and the usual
  hyperparameters normalised (every default filled in), or raises :class:`MethodError` whose
  ``param`` is the request path at fault (``method.type``, ``method.dpo.hyperparameters.beta``,
  ``hyperparameters.n_epochs``) and whose ``code`` is ``invalid_hyperparameters`` for a bad
  hyperparameter, else None (a malformed request).
- :class:`TrainingMethod` is the method's own settings: ``type`` and, for DPO, ``beta`` and
  ``sft_weight``. :meth:`TrainingMethod.to_dict` (``{"type": "dpo", "beta": 0.1,
  "sft_weight": 1.0}``) is what the job store and
  the job spec hold; :meth:`TrainingMethod.from_dict` reads it back (None reads as supervised;
  anything malformed is a :class:`MethodError`). :meth:`TrainingMethod.openai_object` is the
  job object's ``method`` as OpenAI shows it, the hyperparameters inside.

Standard library only (the server imports it in process, as it does the hyperparameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from adapters.hyperparameters import HyperparameterError, Hyperparameters, normalise

MethodType = Literal["supervised", "dpo"]
METHOD_TYPES: tuple[MethodType, ...] = ("supervised", "dpo")
DEFAULT_BETA = 0.1
"""DPO's temperature: how far the policy may move from the reference (trl's and the paper's default)."""
MAX_BETA = 10.0
"""Largest ``beta`` accepted: at 10 the loss is already a hard step on the reward margin."""
DEFAULT_SFT_WEIGHT = 1.0
"""Weight of the supervised loss on the preferred answers added to DPO's (RPO, Pang et al. 2024:
trl's ``rpo_alpha``, whose paper recommends 1.0; Llama 3's DPO used 0.2). Pure DPO (0) raises the
margin but lets the preferred answer's own likelihood fall: on the embedded model it learned a
sign-off as repeated lines instead of one at the end (tests/trainer/test_dpo_sign_off.py)."""
MAX_SFT_WEIGHT = 10.0
_METHOD_KEYS = {"supervised": frozenset(), "dpo": frozenset({"beta", "sft_weight"})}
"""Each method's hyperparameters besides the usual ones."""


class MethodError(ValueError):
    """A bad ``method`` (or hyperparameter); ``param`` is the request path at fault."""

    def __init__(self, message: str, param: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class TrainingMethod:
    """How a job trains: ``supervised`` (next-token loss on the answers) or ``dpo``."""

    type: MethodType = "supervised"
    beta: float | None = None
    """DPO's beta (None for supervised)."""
    sft_weight: float | None = None
    """DPO's weight of the preferred answers' own loss (None for supervised)."""

    @property
    def is_dpo(self) -> bool:
        return self.type == "dpo"

    def to_dict(self) -> dict[str, Any]:
        """The compact form the job store and the job spec hold."""
        return {"type": self.type, **self._own()}

    def _own(self) -> dict[str, Any]:
        return {"beta": self.beta, "sft_weight": self.sft_weight} if self.is_dpo else {}

    @classmethod
    def from_dict(cls, data: object) -> TrainingMethod:
        """Read :meth:`to_dict`'s form (None: supervised); :class:`MethodError` if malformed."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or data.get("type") not in METHOD_TYPES:
            raise MethodError(f"method must be {{'type': 'supervised' | 'dpo', ...}}, got {data!r:.200}", "method")
        unknown = sorted(set(data) - {"type"} - _METHOD_KEYS[data["type"]])
        if unknown:
            raise MethodError(f"method has unknown key(s) {', '.join(map(repr, unknown))}", "method")
        if data["type"] == "supervised":
            return cls()
        return cls(
            "dpo",
            _beta(data.get("beta", "auto"), "method.beta"),
            _sft_weight(data.get("sft_weight", "auto"), "method.sft_weight"),
        )

    def openai_object(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's ``method`` of a job object: ``{"type": t, t: {"hyperparameters": {...}}}``."""
        return {"type": self.type, self.type: {"hyperparameters": {**hyperparameters, **self._own()}}}


def _bounded(value: object, param: str, default: float, high: float, *, zero: bool) -> float:
    """``value`` (``"auto"`` = ``default``) as a number above 0 (or from 0, with ``zero``) and at most ``high``."""
    if value == "auto":
        return default
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or not (number >= 0 if zero else number > 0) or number > high:
        bounds = f"from 0 to {high:g}" if zero else f"above 0 and at most {high:g}"
        raise MethodError(
            f'{param} must be "auto" or a number {bounds}, got {value!r}.', param, "invalid_hyperparameters"
        )
    return float(number)


def _beta(value: object, param: str) -> float:
    return _bounded(value, param, DEFAULT_BETA, MAX_BETA, zero=False)


def _sft_weight(value: object, param: str) -> float:
    return _bounded(value, param, DEFAULT_SFT_WEIGHT, MAX_SFT_WEIGHT, zero=True)


def _method_hyperparameters(method: dict[str, Any], kind: MethodType) -> dict[str, Any] | None:
    """``method[kind]["hyperparameters"]`` (None when absent), shapes checked."""
    allowed = {"type", kind}
    unknown = sorted(set(method) - allowed)
    if unknown:
        raise MethodError(
            f"method has an unknown key {unknown[0]!r} (method.type is {kind!r}).", f"method.{unknown[0]}"
        )
    settings = method.get(kind)
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise MethodError(f"method.{kind} must be an object.", f"method.{kind}")
    unknown = sorted(set(settings) - {"hyperparameters"})
    if unknown:
        raise MethodError(f"method.{kind} has an unknown key {unknown[0]!r}.", f"method.{kind}.{unknown[0]}")
    raw = settings.get("hyperparameters")
    if raw is not None and not isinstance(raw, dict):
        raise MethodError(f"method.{kind}.hyperparameters must be an object.", f"method.{kind}.hyperparameters")
    return raw


def parse_method(method: object, hyperparameters: object) -> tuple[TrainingMethod, dict[str, Any], str]:
    """(the method, its usual hyperparameters normalised, the request path they came from);
    see the module docstring."""
    if hyperparameters is not None and not isinstance(hyperparameters, dict):
        raise MethodError("'hyperparameters' must be an object.", "hyperparameters")
    if method is None:
        method = {"type": "supervised"}
    if not isinstance(method, dict):
        raise MethodError('\'method\' must be an object such as {"type": "dpo", "dpo": {...}}.', "method")
    kind = method.get("type")
    if kind not in METHOD_TYPES:
        raise MethodError(f"method.type must be 'supervised' or 'dpo', got {kind!r}.", "method.type")
    inner = _method_hyperparameters(method, kind)
    if inner is not None and hyperparameters:
        raise MethodError(
            f"Give the hyperparameters once: in method.{kind}.hyperparameters or in 'hyperparameters', not both.",
            "hyperparameters",
        )
    where = f"method.{kind}.hyperparameters" if inner is not None else "hyperparameters"
    raw = dict(inner if inner is not None else hyperparameters or {})
    own = {key: raw.pop(key) for key in _METHOD_KEYS[kind] if key in raw}
    known = {f.name for f in fields(Hyperparameters)} | _METHOD_KEYS[kind]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MethodError(
            f"Unknown hyperparameter {unknown[0]!r} for method {kind!r}; known: {', '.join(sorted(known))}.",
            f"{where}.{unknown[0]}",
            "invalid_hyperparameters",
        )
    try:
        usual = normalise(raw, where)
    except HyperparameterError as exc:
        param = f"{where}.{exc.param}" if exc.param else where
        raise MethodError(exc.message, param, "invalid_hyperparameters") from None
    if kind == "supervised":
        return TrainingMethod(), usual, where
    beta = _beta(own.get("beta", "auto"), f"{where}.beta")
    return TrainingMethod("dpo", beta, _sft_weight(own.get("sft_weight", "auto"), f"{where}.sft_weight")), usual, where
