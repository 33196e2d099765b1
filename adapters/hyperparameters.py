"""Training hyperparameters: OpenAI's names plus swaplora's extensions; the schema both sides share.

:func:`parse` turns a caller's dict (a fine-tuning job's ``hyperparameters``, CLI flags) into a
frozen :class:`Hyperparameters`, raising :class:`HyperparameterError` (message + offending key)
for unknown keys, wrong types or out-of-range values; :func:`normalise` is the same as a JSON dict
with every default filled in (what the server stores on a job and manifests record).

Many fields accept ``"auto"``; :meth:`Hyperparameters.resolve` turns them into numbers once the
data size, the model width and the device are known (the rules are in each field's docstring).
The defaults train a one-page handbook into SmolLM2-135M on two CPU cores in a few minutes and
scale to an 8B model on a GPU (the learning rate shrinks with model width, the budget grows).

Who uses it: the server validates a job's hyperparameters with it in-process when the job is
created (``POST /v1/fine_tuning/jobs``), and the trainer parses the same dict again from the job
spec before training. It imports nothing beyond the standard library (never torch): a test
checks ``sys.modules``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

Auto = Literal["auto"]
AUTO: Auto = "auto"
MAX_RANK = 64
"""Largest LoRA rank the trainer makes: the server's default ``max_rank`` for serving."""
TOKENS_PER_STEP = 1024
"""Sample tokens an optimizer step aims at when neither ``batch_size`` nor the accumulation is given."""


@dataclass(frozen=True)
class DpoAuto:
    """The ``auto`` rules of a DPO job (the other fields resolve as for supervised training).

    Measured on the embedded model (tests/trainer/test_dpo_sign_off.py, 32 pairs): about 100 pair
    visits in steps of about 3 pairs at 5e-4 to 1e-3 taught a sign-off; the same visits in steps of
    12 pairs did not move greedy answers at all."""

    pair_visits: int = 128
    """``n_epochs``: enough passes for about this many pair visits, clamped to 1..``max_epochs``."""
    max_epochs: int = 10
    pairs_per_step: int = 4
    """``gradient_accumulation_steps``: packed rows holding about this many pairs (at least one row)."""
    learning_rate_scale: float = 0.5
    """``learning_rate``: the supervised ``auto`` rate times this (7e-4 for the embedded model)."""


DPO_AUTO = DpoAuto()


class HyperparameterError(ValueError):
    """A bad hyperparameter; ``param`` is the key at fault (``hyperparameters.<key>`` in the API)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Hyperparameters:
    """One job's hyperparameters; ``"auto"`` values are resolved by :meth:`resolve`."""

    n_epochs: int | Auto = AUTO
    """Passes over the training samples. ``auto``: enough passes for about 1200 sample visits
    (small documents need many passes to be memorised: a one-page handbook, ~240 samples, gets
    5; measured 77 % probe recall with 3), clamped to 3..30 (large datasets get 3). A DPO job's
    ``auto`` epochs, accumulation and learning rate follow :class:`DpoAuto` instead."""
    batch_size: int | Auto = AUTO
    """OpenAI's knob: samples per optimizer step. Samples are packed into rows of
    ``max_seq_tokens``; when given, it sets ``gradient_accumulation_steps`` (if that is ``auto``)
    to the number of packed rows holding about this many samples. ``auto``: 1 row per step."""
    learning_rate_multiplier: float | Auto = AUTO
    """OpenAI's knob: multiplies the learning rate. ``auto``: 1.0."""
    learning_rate: float | Auto = AUTO
    """Peak AdamW learning rate before the multiplier. ``auto``: 2e-4 x 4096 / hidden size,
    clamped to 1e-4..2e-3 — 2e-4 for an 8B model (hidden 4096, the QLoRA paper's value),
    about 1.4e-3 for SmolLM2-135M (hidden 576): narrower models take larger LoRA steps."""
    lora_rank: int = 16
    """LoRA rank ``r`` (1..:data:`MAX_RANK`, what the server serves by default)."""
    lora_alpha: float | Auto = AUTO
    """LoRA ``alpha``; the delta is scaled by alpha / rank. ``auto``: 2 x rank."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (0..0.5). 0 by default: the goal is to memorise the documents."""
    target_modules: str | tuple[str, ...] = "all-linear"
    """``"all-linear"`` (every linear layer but the output head, as in QLoRA) or module names."""
    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming the learning rate up linearly (0..0.5); cosine decay
    to zero follows."""
    gradient_accumulation_steps: int | Auto = AUTO
    """Packed rows per optimizer step. ``auto``: from ``batch_size``, else enough rows for about
    :data:`TOKENS_PER_STEP` sample tokens (4 rows of 256 on the CPU, 1 row of 2048 on a GPU; fewer
    rows when the samples share a prompt that each row holds once, see ``trainer.packing``)."""
    max_seq_tokens: int | Auto = AUTO
    """Packing budget: tokens per packed row (samples are concatenated without padding; a
    sample longer than this is cut). 64..32768, and never above the model's context length.
    ``auto``: 256 on the CPU, 2048 on a GPU. A packed row's attention mask is dense and
    block-diagonal, so its cost grows with the square of the row: on the CPU 256-token rows
    train 1.5x faster than 1024-token rows and peak at 1.6 GB instead of 3.9 GB (bench/train_bench.py)."""
    max_seconds: float | Auto = AUTO
    """Wall-clock budget for the training loop; the schedule is re-planned from the measured
    step speed so that the cosine decay ends inside it. ``auto``: 480 s on the CPU, 4 h on a GPU."""
    gradient_checkpointing: bool | Auto = AUTO
    """Recompute activations in the backward pass to save memory. ``auto``: on for CUDA (memory
    is what limits a GPU), off on the CPU (the small models a CPU can train fit in RAM anyway)."""
    heldout_fraction: float = 0.1
    """Share of the samples kept out of training for the eval loss when no validation file is
    given (0..0.5)."""
    max_steps: int | None = None
    """Hard cap on optimizer steps (tests, quick trials); None: no cap."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``target_modules`` as a string or list)."""
        data = asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data

    def budget_seconds(self, device_type: str) -> float:
        """The training loop's wall-clock budget on ``device_type`` (``max_seconds`` resolved)."""
        if self.max_seconds != AUTO:
            return float(self.max_seconds)
        return 480.0 if device_type == "cpu" else 4 * 3600.0

    def within(self, max_seconds: float | None, device_type: str) -> Hyperparameters:
        """These hyperparameters with the budget lowered to ``max_seconds`` (the operator's
        ceiling) where it is higher, ``auto`` included."""
        if max_seconds is None or self.budget_seconds(device_type) <= max_seconds:
            return self
        return replace(self, max_seconds=float(max_seconds))

    def row_tokens(self, device_type: str) -> int:
        """Tokens per packed row on ``device_type`` (``max_seq_tokens`` with ``auto`` resolved)."""
        if self.max_seq_tokens != AUTO:
            return int(self.max_seq_tokens)
        return 256 if device_type == "cpu" else 2048

    def resolve(
        self,
        *,
        n_samples: int,
        rows: int,
        hidden_size: int,
        device_type: str,
        sample_tokens: int | None = None,
        preference: bool = False,
    ) -> Resolved:
        """Numbers for every ``auto`` field, given the data and the model.

        ``n_samples`` training samples of ``sample_tokens`` tokens in all packed into ``rows``
        rows; ``hidden_size`` of the base; ``device_type`` ``"cpu"`` or ``"cuda"``. With
        ``preference`` (DPO) ``n_samples`` counts preference pairs and :data:`DPO_AUTO` sets the
        ``auto`` epochs, accumulation and learning rate.
        """
        n_samples, rows = max(1, n_samples), max(1, rows)
        epochs: int | float
        if self.n_epochs != AUTO:
            epochs = self.n_epochs
        elif preference:
            epochs = min(DPO_AUTO.max_epochs, max(1, math.ceil(DPO_AUTO.pair_visits / n_samples)))
        else:
            epochs = min(30, max(3, math.ceil(1200 / n_samples)))
        if self.gradient_accumulation_steps != AUTO:
            accumulation = int(self.gradient_accumulation_steps)
        elif self.batch_size == AUTO and preference:
            accumulation = max(1, round(DPO_AUTO.pairs_per_step / (n_samples / rows)))
        elif self.batch_size == AUTO:
            # Sample tokens per row: above the row length when samples share a prompt.
            per_row_tokens = sample_tokens / rows if sample_tokens else self.row_tokens(device_type)
            accumulation = max(1, round(TOKENS_PER_STEP / per_row_tokens))
        else:
            accumulation = max(1, round(self.batch_size / (n_samples / rows)))
        accumulation = min(accumulation, rows)
        base_lr = self.learning_rate
        if base_lr == AUTO:
            scale = DPO_AUTO.learning_rate_scale if preference else 1.0
            base_lr = min(2e-3, max(1e-4, 2e-4 * 4096 / hidden_size)) * scale
        multiplier = 1.0 if self.learning_rate_multiplier == AUTO else self.learning_rate_multiplier
        seconds = self.budget_seconds(device_type)
        checkpointing = self.gradient_checkpointing
        if checkpointing == AUTO:
            checkpointing = device_type == "cuda"
        steps_per_epoch = math.ceil(rows / accumulation)
        total = epochs * steps_per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        return Resolved(
            n_epochs=int(epochs),
            gradient_accumulation_steps=int(accumulation),
            learning_rate=float(base_lr) * float(multiplier),
            lora_alpha=float(2 * self.lora_rank if self.lora_alpha == AUTO else self.lora_alpha),
            max_seconds=float(seconds),
            gradient_checkpointing=bool(checkpointing),
            total_steps=max(1, int(total)),
        )


@dataclass(frozen=True)
class Resolved:
    """The ``auto`` values of one job made concrete (recorded in the manifest)."""

    n_epochs: int
    gradient_accumulation_steps: int
    learning_rate: float
    """Peak learning rate, multiplier applied."""
    lora_alpha: float
    max_seconds: float
    gradient_checkpointing: bool
    total_steps: int
    """Planned optimizer steps (epochs x steps per epoch, capped by ``max_steps``)."""


# key -> (accepted kinds, minimum, maximum); kinds: "int", "float", "auto", "bool", "none"
_RULES: dict[str, tuple[tuple[str, ...], float | None, float | None]] = {
    "n_epochs": (("auto", "int"), 1, 1000),
    "batch_size": (("auto", "int"), 1, 4096),
    "learning_rate_multiplier": (("auto", "float"), 1e-3, 100),
    "learning_rate": (("auto", "float"), 1e-7, 1.0),
    "lora_rank": (("int",), 1, MAX_RANK),
    "lora_alpha": (("auto", "float"), 1e-3, 4096),
    "lora_dropout": (("float",), 0, 0.5),
    "warmup_ratio": (("float",), 0, 0.5),
    "gradient_accumulation_steps": (("auto", "int"), 1, 1024),
    "max_seq_tokens": (("auto", "int"), 64, 32768),
    "max_seconds": (("auto", "float"), 1, 7 * 24 * 3600),
    "gradient_checkpointing": (("auto", "bool"), None, None),
    "heldout_fraction": (("float",), 0, 0.5),
    "max_steps": (("none", "int"), 1, 10**7),
}


def _check_value(key: str, value: object, where: str) -> object:
    kinds, low, high = _RULES[key]
    if value == AUTO and "auto" in kinds:
        return AUTO
    if value is None and "none" in kinds:
        return None
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int) and ("int" in kinds or "float" in kinds):
        number: float | int = value
    elif isinstance(value, float) and "float" in kinds and math.isfinite(value):
        number = value
    elif isinstance(value, float) and "int" in kinds and value.is_integer():
        number = int(value)  # JSON clients may send 3.0 for 3
    else:
        number = None  # type: ignore[assignment]
    if isinstance(value, bool) or number is None:
        wanted = " or ".join(
            {"auto": '"auto"', "int": "an integer", "float": "a number", "bool": "true/false", "none": "null"}[k]
            for k in kinds
        )
        raise HyperparameterError(f"{where}.{key} must be {wanted}, got {value!r}.", key)
    if (low is not None and number < low) or (high is not None and number > high):
        raise HyperparameterError(f"{where}.{key} must be between {low:g} and {high:g}, got {value!r}.", key)
    return float(number) if "float" in kinds else int(number)


def _check_targets(value: object, where: str) -> str | tuple[str, ...]:
    if value == "all-linear":
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) and v.isidentifier() for v in value):
        return tuple(value)
    raise HyperparameterError(
        f'{where}.target_modules must be "all-linear" or a non-empty list of module names '
        f'such as ["q_proj", "v_proj"], got {value!r}.',
        "target_modules",
    )


def parse(raw: dict[str, Any] | None, where: str = "hyperparameters") -> Hyperparameters:
    """Validate ``raw`` (None or {} means all defaults) into :class:`Hyperparameters`; messages
    name a key as ``<where>.<key>`` (``method.dpo.hyperparameters.n_epochs`` for a method's)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HyperparameterError(f"{where} must be a JSON object.", None)
    known = {f.name for f in fields(Hyperparameters)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise HyperparameterError(
            f"Unknown hyperparameter {unknown[0]!r}; known: {', '.join(sorted(known))}.", str(unknown[0])
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _check_targets(value, where) if key == "target_modules" else _check_value(key, value, where)
    return Hyperparameters(**values)


def normalise(raw: dict[str, Any] | None, where: str = "hyperparameters") -> dict[str, Any]:
    """``raw`` validated, with every default filled in, as a JSON-ready dict."""
    return parse(raw, where).to_dict()
