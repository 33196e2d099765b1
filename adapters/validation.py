"""Checks that a PEFT LoRA adapter (config JSON + safetensors weights) fits a loaded base.

:func:`validate_adapter` is the one gate every adapter passes before it is stored, whether a
tenant uploaded it or the trainer produced it. It accepts exactly what ``peft`` ``save_pretrained``
writes for plain LoRA on linear layers — keys ``base_model.model.<module>.lora_A.weight`` and
``.lora_B.weight`` — and refuses, with an :class:`AdapterValidationError` naming the offending
field, anything the serving engine would compute differently from PEFT: DoRA, biases,
per-layer rank or alpha patterns, extra saved modules, embedding LoRA, unknown options.

It never unpickles: the weights must parse as safetensors, whose header is read before any tensor.
The found weight modules are the truth; the config's ``target_modules`` (a list, a regex or
``"all-linear"``) must cover them, and the returned config names them explicitly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic_core import from_json
from safetensors import safe_open

from adapters.base_model import BaseModelSpec
from adapters.manifest import AdapterManifest, Source, utc_now_iso

KEY_PREFIX = "base_model.model."
READ_BACKEND = "pread"
"""How safetensors files are read. safetensors 0.8.0's default ``mmap`` backend leaks Python
objects on every tensor read: about 22 KB per load of a rank-16 all-linear adapter of the
embedded model, so a server that loads adapters all day grows without bound. ``pread`` copies
into fresh memory and leaks nothing; the adapter cache copies the tensors into their ready form
anyway."""
_KEY_RE = re.compile(r"^base_model\.model\.(?P<module>[A-Za-z0-9_.]+)\.lora_(?P<part>[AB])\.weight$")
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
MAX_CONFIG_BYTES = 1024 * 1024
"""A PEFT config is a few KB; anything far larger is not one."""

# Options that only matter while training or for bookkeeping: any value is fine.
_HARMLESS_OPTIONS = frozenset(
    {
        "peft_type",
        "r",
        "lora_alpha",
        "target_modules",
        "exclude_modules",
        "use_rslora",
        "bias",
        "task_type",
        "inference_mode",
        "base_model_name_or_path",
        "revision",
        "auto_mapping",
        "peft_version",
        "lora_dropout",
        "init_lora_weights",
        "loftq_config",
        "eva_config",
        "corda_config",
        "lora_ga_config",
        "kasa_config",
        "monteclora_config",
        "megatron_config",
        "megatron_core",
        "qalora_group_size",
        "layers_pattern",
        "ensure_weight_tying",
        "fan_in_fan_out",
    }
)
# Initialisations that leave the base weights alone (the others rewrite them).
_PLAIN_INITS: tuple[object, ...] = (True, False, "gaussian", "eva", "orthogonal")
# Options that change the forward math when set; each is refused unless empty/false/null.
_MATH_OPTIONS = {
    "use_dora": "DoRA (use_dora) is not supported",
    "modules_to_save": "modules_to_save is not supported (only LoRA deltas are served)",
    "layers_to_transform": "layers_to_transform is not supported",
    "rank_pattern": "rank_pattern (per-layer ranks) is not supported",
    "alpha_pattern": "alpha_pattern (per-layer alphas) is not supported",
    "lora_bias": "lora_bias is not supported",
    "use_qalora": "QA-LoRA (use_qalora) is not supported",
    "use_bdlora": "use_bdlora is not supported",
    "layer_replication": "layer_replication is not supported",
    "target_parameters": "target_parameters is not supported (only linear layers)",
    "trainable_token_indices": "trainable_token_indices is not supported",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) is not supported",
    "arrow_config": "arrow_config is not supported",
}


class AdapterValidationError(ValueError):
    """Why an adapter was refused; ``param`` names the file or config field at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ValidatedAdapter:
    """What validation learned: the LoRA shape and the config to store with the weights."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    """Sorted short names of the adapted layers, e.g. ``("k_proj", "q_proj")``."""
    modules: tuple[str, ...]
    """Sorted full module names that carry weights, e.g. ``model.layers.0.self_attn.q_proj``."""
    use_rslora: bool
    """Scale by ``alpha / sqrt(r)`` instead of ``alpha / r``."""
    config: dict[str, Any]
    """The ``adapter_config.json`` content to write: the upload's, with explicit targets."""

    @property
    def scaling(self) -> float:
        """The factor PEFT multiplies ``B(Ax)`` by."""
        return lora_scaling(self.alpha, self.rank, self.use_rslora)

    def config_bytes(self) -> bytes:
        """The ``adapter_config.json`` to store next to the weights (sorted keys, stable bytes)."""
        return (json.dumps(self.config, indent=2, sort_keys=True) + "\n").encode("utf-8")

    def manifest(
        self,
        *,
        tenant: str,
        name: str,
        version: int,
        spec: BaseModelSpec,
        weights_sha256: str,
        source: Source,
        metrics: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> AdapterManifest:
        """The manifest of this adapter published as ``tenant/name@version`` for the base ``spec``."""
        return AdapterManifest(
            tenant=tenant,
            name=name,
            version=version,
            base_spec_hash=spec.hash,
            chat_template_hash=spec.chat_template_hash,
            rank=self.rank,
            alpha=self.alpha,
            target_modules=self.target_modules,
            weights_sha256=weights_sha256,
            created_at=utc_now_iso(),
            source=source,
            metrics=metrics or {},
            extra=extra or {},
        )


def lora_scaling(alpha: float, rank: int, use_rslora: bool) -> float:
    """PEFT's LoRA scale: ``alpha / r``, or ``alpha / sqrt(r)`` for rsLoRA."""
    return alpha / (math.sqrt(rank) if use_rslora else rank)


def validate_adapter(
    config_json: bytes,
    weights_path: Path,
    linear_shapes: Mapping[str, tuple[int, int]],
    max_rank: int,
) -> ValidatedAdapter:
    """Validate a PEFT LoRA adapter against a base's linear layers, or raise the first problem."""
    config = _parse_config(config_json)
    rank, alpha, use_rslora = _check_config(config, max_rank)
    shapes = _read_weight_shapes(Path(weights_path), linear_shapes)
    modules = _check_shapes(shapes, rank, linear_shapes)
    _check_targets(config, modules)
    _check_finite(Path(weights_path))
    written = {**config, "target_modules": list(modules), "exclude_modules": None, "inference_mode": True}
    return ValidatedAdapter(
        rank=rank,
        alpha=alpha,
        target_modules=tuple(sorted({m.rsplit(".", 1)[-1] for m in modules})),
        modules=modules,
        use_rslora=use_rslora,
        config=written,
    )


def _parse_config(config_json: bytes) -> dict[str, Any]:
    if len(config_json) > MAX_CONFIG_BYTES:
        raise AdapterValidationError("adapter_config.json is too large.", "adapter_config.json")
    try:
        # pydantic's parser: also refuses lone surrogates and nesting deep enough to recurse (NaN
        # passes here so that the field's own check can name it)
        config = from_json(config_json)
    except ValueError as exc:
        raise AdapterValidationError(f"adapter_config.json is not valid JSON: {exc}", "adapter_config.json") from None
    if not isinstance(config, dict):
        raise AdapterValidationError("adapter_config.json must be a JSON object.", "adapter_config.json")
    return config


def _check_config(config: dict[str, Any], max_rank: int) -> tuple[int, float, bool]:
    """Return (rank, alpha, use_rslora) or raise for a config the engine would serve wrongly."""
    if config.get("peft_type") != "LORA":
        raise AdapterValidationError(f"peft_type must be 'LORA', got {config.get('peft_type')!r}.", "peft_type")
    rank = config.get("r")
    if type(rank) is not int or not 1 <= rank <= max_rank:  # type(): refuse true/false too
        raise AdapterValidationError(f"r must be an integer from 1 to {max_rank}, got {rank!r}.", "r")
    alpha = config.get("lora_alpha", 8)  # PEFT's default when the key is absent
    if type(alpha) not in (int, float) or not math.isfinite(alpha) or alpha <= 0:
        raise AdapterValidationError(f"lora_alpha must be a number > 0, got {alpha!r}.", "lora_alpha")
    bias = config.get("bias", "none")
    if bias != "none":
        raise AdapterValidationError(f"bias must be 'none', got {bias!r}.", "bias")
    if config.get("fan_in_fan_out"):
        # Only meaningful for GPT-2 style Conv1D layers, which a LoRA for this base cannot target.
        raise AdapterValidationError("fan_in_fan_out is not supported.", "fan_in_fan_out")
    init = config.get("init_lora_weights", True)
    if init not in _PLAIN_INITS:
        # PiSSA, OLoRA, LoftQ, CorDA and LoRA-GA rewrite the base weights when they initialise;
        # such an adapter is only right on that rewritten base until PEFT converts it.
        raise AdapterValidationError(
            f"init_lora_weights={init!r} changes the base weights; convert the adapter to plain LoRA "
            "(save_pretrained(..., path_initial_model_for_weight_conversion=...)) before uploading.",
            "init_lora_weights",
        )
    use_rslora = config.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise AdapterValidationError("use_rslora must be true or false.", "use_rslora")
    for key, reason in _MATH_OPTIONS.items():
        if config.get(key):
            raise AdapterValidationError(f"{reason}.", key)
    for key, value in config.items():
        # An option this code does not know may change the math; refuse it unless it is unset.
        if key not in _HARMLESS_OPTIONS and key not in _MATH_OPTIONS and value:
            raise AdapterValidationError(f"Unsupported adapter option {key!r}.", key)
    return rank, float(alpha), use_rslora


def _read_weight_shapes(
    path: Path, linear_shapes: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Key -> (dtype, shape) from the safetensors header, without reading tensor data.

    Each key is checked before its entry is read, so a header with a huge number of entries
    fails at its first bad key; valid keys are at most two per linear layer of the base.
    """
    try:
        with safe_open(str(path), framework="pt", backend=READ_BACKEND) as f:
            shapes = {}
            for key in f.keys():
                _parse_key(key, linear_shapes)
                entry = f.get_slice(key)
                shapes[key] = (entry.get_dtype(), tuple(entry.get_shape()))
            return shapes
    except AdapterValidationError:
        raise
    except Exception:  # safetensors raises its own error types, OSError or ValueError on garbage
        raise AdapterValidationError(
            "adapter_model.safetensors is not a safetensors file.", "adapter_model.safetensors"
        ) from None


def _parse_key(key: str, linear_shapes: Mapping[str, tuple[int, int]]) -> tuple[str, str]:
    """(module, "A" or "B") for a PEFT LoRA key on one of the base's linear layers, else raise."""
    match = _KEY_RE.fullmatch(key)
    if not match:
        raise AdapterValidationError(
            f"Unexpected tensor {key!r}: only 'base_model.model.<module>.lora_A.weight' and "
            "'.lora_B.weight' (PEFT's saved LoRA form) are accepted.",
            "adapter_model.safetensors",
        )
    module = match.group("module")
    if module not in linear_shapes:
        raise AdapterValidationError(
            f"Tensor {key!r} targets {module!r}, which is not a linear layer of the base model "
            "(was the adapter trained for another model?).",
            "adapter_model.safetensors",
        )
    return module, match.group("part")


def _check_shapes(
    shapes: Mapping[str, tuple[str, tuple[int, ...]]],
    rank: int,
    linear_shapes: Mapping[str, tuple[int, int]],
) -> tuple[str, ...]:
    """Check every key, dtype and shape; return the sorted module names that carry weights."""
    parts: dict[str, set[str]] = {}
    for key, (dtype, shape) in shapes.items():
        module, part = _parse_key(key, linear_shapes)
        if dtype not in FLOAT_DTYPES:
            raise AdapterValidationError(
                f"Tensor {key!r} has dtype {dtype}; expected one of {sorted(FLOAT_DTYPES)}.",
                "adapter_model.safetensors",
            )
        in_features, out_features = linear_shapes[module]
        expected = (rank, in_features) if part == "A" else (out_features, rank)
        if shape != expected:
            raise AdapterValidationError(
                f"Tensor {key!r} has shape {list(shape)}; expected {list(expected)} for r={rank} on "
                f"a layer with in={in_features}, out={out_features} (was the adapter trained for "
                "another model or with another rank?).",
                "adapter_model.safetensors",
            )
        parts.setdefault(module, set()).add(part)
    if not parts:
        raise AdapterValidationError("adapter_model.safetensors holds no LoRA tensors.", "adapter_model.safetensors")
    for module, found in sorted(parts.items()):
        if found != {"A", "B"}:
            missing = "lora_B" if "A" in found else "lora_A"
            raise AdapterValidationError(f"Module {module!r} has no {missing} weight.", "adapter_model.safetensors")
    return tuple(sorted(parts))


def _check_targets(config: dict[str, Any], modules: tuple[str, ...]) -> None:
    """Every module that carries weights must be one the config's target_modules lists.

    A string other than ``"all-linear"`` is a regular expression to PEFT. It is never evaluated
    here: it comes from whoever uploaded the adapter, and a pattern such as ``((.|.)|(.|.))*Z``
    backtracks for ever. The weights say which modules are adapted, and the stored config names
    them as a list (:func:`validate_adapter`), so nothing downstream evaluates the pattern either.
    """
    targets = config.get("target_modules")
    exclude = config.get("exclude_modules")
    if isinstance(targets, str):
        targets = "all-linear"  # the weights decide (see above)
    if isinstance(exclude, str):
        exclude = None
    for module in modules:
        if not _selects(targets, module, "target_modules"):
            raise AdapterValidationError(
                f"The weights adapt {module!r}, which the config's target_modules does not select.",
                "target_modules",
            )
        if exclude and _selects(exclude, module, "exclude_modules"):
            raise AdapterValidationError(
                f"The weights adapt {module!r}, which the config's exclude_modules excludes.",
                "exclude_modules",
            )


def _selects(spec: object, module: str, param: str) -> bool:
    """PEFT's matching rule for lists: a name or a dotted suffix (regexes never get here)."""
    if spec == "all-linear":
        return True  # every candidate module is a linear layer of the base (checked above)
    if isinstance(spec, list) and all(isinstance(t, str) for t in spec):
        return any(module == t or module.endswith("." + t) for t in spec)
    raise AdapterValidationError(f"{param} must be a list of strings, a regex or 'all-linear'.", param)


def _check_finite(path: Path) -> None:
    """A NaN or infinity in a delta would turn every answer of that adapter into garbage."""
    with safe_open(str(path), framework="pt", backend=READ_BACKEND) as f:
        for key in f.keys():
            if not torch.isfinite(f.get_tensor(key)).all():
                raise AdapterValidationError(
                    f"Tensor {key!r} contains NaN or infinite values.", "adapter_model.safetensors"
                )
