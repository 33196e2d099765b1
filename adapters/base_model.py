"""The base model: its spec (a stable hash) and the one loader server/ and trainer/ share.

The base is always loaded in 4-bit NormalFloat (NF4) with double quantization through
bitsandbytes — the QLoRA recipe — on CUDA when present, else on the CPU, then put in the form of
its execution plan (:mod:`adapters.execution_plan`: compute dtype, NF4 packed or dequantized
once), chosen by measurement unless given. The plan changes how the NF4 numbers are computed,
never which numbers: the spec below (and so every adapter's manifest) is the same under every
plan. Any Hugging Face
causal-LM directory with safetensors weights works; ``trust_remote_code`` stays off and pickle
weights are refused.

:class:`BaseModelSpec` identifies what an adapter was trained against: the model (its config and
weight files), the quantization settings and the chat template. Two loads of the same directory
give the same :attr:`BaseModelSpec.hash`; an adapter's manifest records it and the server refuses
to serve an adapter whose hash differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from adapters.execution_plan import ExecutionPlan, PlanRequest
from adapters.own_thread import runs_in_own_thread

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

QUANTIZATION: dict[str, str | bool] = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}
"""The QLoRA quantization recipe, part of every spec. ``bnb_4bit_compute_dtype`` names the
recipe's storage and GPU compute dtype; the execution plan may compute in fp32 on a CPU without
fast bf16, with the same NF4 weights, so it is not part of what makes an adapter compatible."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BaseModelSpec:
    """What makes two bases interchangeable for an adapter."""

    name: str
    """Human-readable model name (the directory name)."""
    model_fingerprint: str
    """sha256 over the canonical config.json and the weight files' names and sizes."""
    chat_template_hash: str
    """sha256 of the tokenizer's chat template (samples are rendered with it)."""
    quantization: dict[str, str | bool] = field(default_factory=lambda: dict(QUANTIZATION))
    """bitsandbytes settings the base is loaded with."""

    @property
    def hash(self) -> str:
        """Stable hash of everything above except the display name."""
        payload = json.dumps(
            {
                "model": self.model_fingerprint,
                "chat_template": self.chat_template_hash,
                "quantization": self.quantization,
            },
            sort_keys=True,
        )
        return sha256_text(payload)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hash": self.hash}


@dataclass
class LoadedBase:
    """A base model in memory with what the rest of the system needs to know about it."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    spec: BaseModelSpec
    linear_shapes: dict[str, tuple[int, int]]
    """Module name -> (in_features, out_features) of every linear layer a LoRA may target."""
    device: torch.device
    context_length: int
    """The model's own limit on prompt + completion tokens."""
    eos_token_ids: frozenset[int]
    plan: ExecutionPlan = ExecutionPlan("bfloat16", "nf4", "the QLoRA recipe as loaded")
    """How this base computes (compute dtype, NF4 packed or dense)."""


class ServedBase(Protocol):
    """What the HTTP side needs of the base it serves: a :class:`LoadedBase` in this process, or the
    facts of the base loaded by engine replicas elsewhere (:mod:`server.cluster`)."""

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...
    @property
    def spec(self) -> BaseModelSpec: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def context_length(self) -> int: ...
    @property
    def eos_token_ids(self) -> frozenset[int]: ...
    @property
    def plan(self) -> ExecutionPlan: ...
    @property
    def linear_shapes(self) -> dict[str, tuple[int, int]]: ...


class BaseModelError(RuntimeError):
    """The directory is not a loadable causal LM (missing files, pickle weights, ...)."""


def model_fingerprint(model_dir: Path) -> str:
    """Hash config.json (canonicalised) and the names and sizes of the weight files.

    Hashing multi-GB weights would take minutes at every start; names, sizes and the config
    identify a checkpoint well enough to catch the mistake this guards against (serving an
    adapter on a different base).
    """
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise BaseModelError(f"{model_dir} has no config.json; expected a Hugging Face model directory.")
    config = json.loads(config_path.read_text())
    for volatile in ("transformers_version", "_name_or_path"):
        config.pop(volatile, None)
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise BaseModelError(f"{model_dir} has no *.safetensors weights (pickle weights are not loaded).")
    payload = {
        "config": config,
        "weights": [(p.name, p.stat().st_size) for p in weights],
    }
    return sha256_text(json.dumps(payload, sort_keys=True))


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA when present, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if not getattr(tokenizer, "chat_template", None):
        raise BaseModelError(f"{model_dir}: the tokenizer has no chat template; a chat model is required.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def spec_for(model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> BaseModelSpec:
    return BaseModelSpec(
        name=model_dir.resolve().name,
        model_fingerprint=model_fingerprint(model_dir),
        chat_template_hash=sha256_text(tokenizer.chat_template),
    )


def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Every linear layer except the output head, as PEFT names them (``model.layers.0...``)."""
    shapes: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        # bitsandbytes' Linear4bit subclasses nn.Linear and keeps the logical in/out features.
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            shapes[name] = (int(module.in_features), int(module.out_features))
    return shapes


def _eos_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def load_nf4_model(model_dir: Path, device: torch.device, *, quantize: bool = True) -> PreTrainedModel:
    """The model in ``model_dir`` as bitsandbytes loads it: NF4 with double quantization, the rest
    in bf16, in eval mode, not yet in any plan's form (``quantize=False``: all bf16)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    # Quantized from the bf16 checkpoint in every plan, so the NF4 codes and scales never differ.
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=quant if quantize else None,
        dtype=torch.bfloat16,
        device_map={"": device.index or 0} if device.type == "cuda" else None,
        use_safetensors=True,
        trust_remote_code=False,
    )
    model.train(False)  # eval mode: what PreTrainedModel.eval() does (it is unannotated)
    return model


@runs_in_own_thread
def load_base(
    model_dir: Path,
    device: str | None = None,
    *,
    quantize: bool = True,
    plan: ExecutionPlan | None = None,
    request: PlanRequest | None = None,
    plan_cache: Path | None = None,
    threads: int | None = None,
) -> LoadedBase:
    """Load ``model_dir`` in NF4 (double quantization), in the form of ``plan``, ready for inference.

    Without ``plan`` one is chosen for this machine and model (:func:`adapters.plan_choice.choose_plan`,
    honouring ``request``, caching the measurement in the directory ``plan_cache``, measuring with
    ``threads`` torch threads). ``quantize=False`` loads plain 16-bit weights instead (the trainer's
    16-bit LoRA comparison), in the plan's compute dtype; its spec then records empty quantization
    settings, so its hash differs from the NF4 one.

    It runs in a thread of its own (:mod:`adapters.own_thread`): the OpenMP pool that loading and
    the plan probe make ends with it, instead of staying in the caller's thread, where it would
    slow down the engine's thread.
    """
    from adapters.nf4_forms import apply_plan
    from adapters.plan_choice import choose_plan, unquantized_plan

    model_dir = Path(model_dir)
    tokenizer = load_tokenizer(model_dir)
    spec = spec_for(model_dir, tokenizer)
    if not quantize:
        spec = replace(spec, quantization={})
    target = pick_device(device)
    model = load_nf4_model(model_dir, target, quantize=quantize)
    if not quantize:
        plan = plan or unquantized_plan(target, request)
        model = model.to(plan.dtype)  # type: ignore[arg-type]  # transformers' @wraps'd to() loses self for mypy
    else:
        if plan is not None and plan.weights == "dense" and target.type != "cpu":
            plan = replace(plan, weights="nf4", reason=f"{plan.reason}; dense weights are for CPUs only")
        plan = plan or choose_plan(model, target, request, plan_cache, threads)
        apply_plan(model, plan)
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return LoadedBase(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        linear_shapes=linear_shapes(model),
        device=target,
        context_length=context,
        eos_token_ids=_eos_ids(model, tokenizer),
        plan=plan,
    )
