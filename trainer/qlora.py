"""QLoRA: LoRA adapters trained on the very NF4 base the server serves.

:func:`prepare_model` loads the base through :func:`adapters.base_model.load_base` (the one
loader, so the adapter's spec hash is the server's), applies PEFT's k-bit preparation (norms and
embeddings upcast to fp32, as in the QLoRA recipe) and wraps every linear layer but the output
head in a LoRA (``target_modules="all-linear"`` by default); LoRA weights are fp32. With
``init_adapter`` the LoRA starts from a stored adapter's weights (its rank and targets win over
the hyperparameters). ``quantize=False`` trains 16-bit LoRA on a bf16 base (for comparison only:
such an adapter's spec hash is not the server's).

:func:`train` runs the loop: packed rows, gradient accumulation (token-weighted, so every
trained token counts the same whatever row it sits in), gradient clipping at 1.0, linear
warm-up then cosine decay to zero, a fixed seed for the row order. The optimizer is
bitsandbytes' ``PagedAdamW`` (32-bit states, paged to host memory under GPU memory pressure;
bitsandbytes 0.50 runs it on the CPU too), falling back to ``torch.optim.AdamW`` where it cannot
be built. The wall-clock budget (``max_seconds``) is met by re-planning: after every step the
mean step time so far says how many steps fit, and the cosine schedule is stretched or shrunk to
end there, so training ends with a decayed learning rate instead of being cut mid-flight.
``should_stop`` is polled before every step (cancel); ``on_progress`` gets one dict per step.
What a step minimises is a :class:`trainer.objective.Objective`: the answers' cross-entropy by
default, or DPO's (:func:`trainer.dpo.objective`) over rows of preference pairs, whose plan
counts pairs, not samples.
The base computes in its execution plan (:mod:`adapters.execution_plan`), the server's when a job
names it: NF4 packed or dequantized once, bf16 or fp32. Norms, embeddings and the output head
are trained around in fp32 either way (PEFT's k-bit preparation, or the same cast for a dense
base), and the NF4 layers, packed or dense, compute in the plan's dtype and answer in fp32. On
CUDA with a bf16 plan forward passes run under bf16 autocast (the QLoRA recipe); on the CPU the
layers' own dtypes decide, where autocast gains nothing.

On the CPU, :func:`prepare_model` gives torch fewer threads when the machine is oversubscribed
(1-minute load average above the core count; ``OMP_NUM_THREADS`` overrides): OpenMP threads
that outnumber the free cores wait for each other at every operation, measured 10x slower than
one thread on a shared two-core machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from adapters.base_model import BaseModelSpec, LoadedBase, load_base, pick_device
from adapters.execution_plan import ExecutionPlan, PlanRequest
from adapters.hyperparameters import Hyperparameters, Resolved
from trainer.objective import SUPERVISED, Objective
from trainer.packing import PackedBatch
from trainer.schedule import Schedule

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A base model with trainable LoRA layers, ready for :func:`train`."""

    model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    spec: BaseModelSpec
    device: torch.device
    linear_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The base's linear layers (module name -> (in, out)), for validating the result."""
    context_length: int = 2048
    eos_token_ids: frozenset[int] = frozenset()
    plan: ExecutionPlan = ExecutionPlan("bfloat16", "nf4")
    """How the base computes (see :mod:`adapters.execution_plan`)."""

    @classmethod
    def wrap(cls, base: LoadedBase, model: PeftModel) -> Prepared:
        """``model`` (``base.model`` wrapped in LoRA) with everything else taken from ``base``."""
        return cls(
            model,
            base.tokenizer,
            base.spec,
            base.device,
            base.linear_shapes,
            base.context_length,
            base.eos_token_ids,
            base.plan,
        )

    def precision(self) -> contextlib.AbstractContextManager[object]:
        """The autocast the forward passes run under (see the module docstring)."""
        if self.plan.compute_dtype == "bfloat16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainResult:
    """What a training run did."""

    steps: int
    """Optimizer steps taken."""
    trained_tokens: int
    """Tokens fed through the model (all epochs, prompts included), as OpenAI counts them."""
    seconds: float
    final_loss: float
    """Mean training loss over the last steps (up to 10)."""
    stopped_early: bool
    """``should_stop`` ended the run before its planned end (the budget does not count)."""
    plan: Resolved | None = None
    """The resolved hyperparameters the run started with."""


def prepare_model(
    base_model_dir: Path,
    hp: Hyperparameters,
    *,
    device: str | None = None,
    quantize: bool = True,
    init_adapter: Path | None = None,
    plan: ExecutionPlan | None = None,
    request: PlanRequest | None = None,
    plan_cache: Path | None = None,
) -> Prepared:
    """The base (NF4 unless ``quantize`` is False) with a trainable LoRA per ``hp``; the base in
    ``plan``'s form, or one chosen as :func:`adapters.base_model.load_base` chooses it."""
    if pick_device(device).type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads())
    base = load_base(Path(base_model_dir), device, quantize=quantize, plan=plan, request=request, plan_cache=plan_cache)
    model = _trainable_base(base, hp, quantize)
    return Prepared.wrap(base, _with_lora(model, hp, init_adapter))


def _trainable_base(base: LoadedBase, hp: Hyperparameters, quantize: bool) -> torch.nn.Module:
    """``base.model`` frozen, with norms and embeddings in fp32 and gradient checkpointing per ``hp``."""
    from peft import prepare_model_for_kbit_training

    checkpointing = hp.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = base.device.type == "cuda"
    model = base.model
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            # bitsandbytes repacks NF4 weights for a fast CPU inference kernel the first time a
            # layer runs in eval mode; that kernel has no backward, so training after any eval
            # (the "before" evaluation) would silently get wrong gradients. Keep the plain layout.
            cast(Any, module).support_avx512bf16_for_cpu = False
    if quantize and base.plan.weights == "nf4":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(checkpointing),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    else:
        freeze_around_dense(model)
        if checkpointing:
            hf = cast("PreTrainedModel", model)
            hf.enable_input_require_grads()
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _with_lora(model: torch.nn.Module, hp: Hyperparameters, init_adapter: Path | None) -> PeftModel:
    """``model`` wrapped in a trainable LoRA: ``init_adapter``'s weights, or a new one per ``hp``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    targets = hp.target_modules if hp.target_modules == "all-linear" else list(hp.target_modules)
    config = LoraConfig(
        r=hp.lora_rank,
        # peft annotates lora_alpha as int but uses any number (alpha / r); a float alpha is kept as is
        lora_alpha=2 * hp.lora_rank if hp.lora_alpha == "auto" else hp.lora_alpha,  # type: ignore[arg-type]
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def freeze_around_dense(model: torch.nn.Module) -> None:
    """What k-bit preparation does for a packed base, for a dense one: every base parameter
    frozen; everything but the dense NF4 weights (norms, embeddings, head) in fp32."""
    from adapters.nf4_forms import NF4DenseLinear

    dense = {id(m.weight) for m in model.modules() if isinstance(m, NF4DenseLinear)}
    for param in model.parameters():
        param.requires_grad_(False)
        if id(param) not in dense and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()


def cpu_threads() -> int:
    """Torch threads for this process: all cores, fewer when the CPU is oversubscribed.

    The load average includes this process's own earlier work (a test suite, an evaluation), so
    only a load above the core count counts as other work competing for the cores.
    """
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    wanted = cores if load <= cores else max(1, int(cores * cores / load))
    return min(torch.get_num_threads(), wanted)


def plan(prepared: Prepared, batches: Sequence[PackedBatch], hp: Hyperparameters, preference: bool = False) -> Resolved:
    """``hp`` resolved for these packed rows on this model and device (rows of preference pairs
    with ``preference``)."""
    hidden_size = int(cast("PreTrainedModel", prepared.model).config.hidden_size)
    return plan_rows(batches, hp, hidden_size=hidden_size, device_type=prepared.device.type, preference=preference)


def plan_rows(
    batches: Sequence[PackedBatch], hp: Hyperparameters, *, hidden_size: int, device_type: str, preference: bool = False
) -> Resolved:
    """``hp`` resolved for these packed rows, for a model of ``hidden_size`` on ``device_type``
    (what :func:`plan` does once a model is loaded); ``preference``: rows of preference pairs,
    two samples each, resolved by DPO's rules."""
    return hp.resolve(
        preference=preference,
        n_samples=sum(b.samples for b in batches) // (2 if preference else 1),
        rows=len(batches),
        sample_tokens=sum(b.sample_tokens for b in batches),
        hidden_size=hidden_size,
        device_type=device_type,
    )


def make_optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """bitsandbytes ``PagedAdamW`` (32-bit), or torch's AdamW where bitsandbytes cannot serve."""
    try:
        from bitsandbytes.optim.adamw import PagedAdamW

        return PagedAdamW(params, lr=lr, weight_decay=0.0)
    except Exception as exc:  # no backend for this device, or an old bitsandbytes
        log.warning("PagedAdamW unavailable (%s); using torch.optim.AdamW", exc)
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _micro_step(prepared: Prepared, objective: Objective, row: PackedBatch, weight: float) -> float:
    """Forward and backward one row; its mean loss is scaled by ``weight``."""
    loss = objective.loss(prepared, row)
    torch.autograd.backward(loss * weight)
    return float(loss.detach()) * weight


def _steps(batches: Sequence[PackedBatch], accumulation: int, rng: random.Random) -> Iterator[list[PackedBatch]]:
    """Groups of ``accumulation`` rows, reshuffled every epoch, forever."""
    while True:
        order = list(batches)
        rng.shuffle(order)
        for start in range(0, len(order), accumulation):
            yield order[start : start + accumulation]


def train(
    prepared: Prepared,
    batches: list[PackedBatch],
    hp: Hyperparameters,
    *,
    seed: int,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    objective: Objective = SUPERVISED,
) -> TrainResult:
    """Train the LoRA in ``prepared.model`` on ``batches``; see the module docstring."""
    rows = [b for b in batches if b.trained_tokens > 0]
    if not rows:
        raise ValueError("No training tokens: every sample's answer is empty.")
    resolved = plan(prepared, rows, hp, objective.preference)
    torch.manual_seed(seed)
    prepared.model.train()
    params = [p for p in prepared.model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, resolved.learning_rate)
    schedule = Schedule.of(resolved, hp.warmup_ratio)
    steps_per_epoch = math.ceil(len(rows) / resolved.gradient_accumulation_steps)
    groups = _steps(rows, resolved.gradient_accumulation_steps, random.Random(seed))
    run = _Run(start=time.monotonic())
    while run.step < schedule.total:
        if should_stop is not None and should_stop():
            run.stopped = True
            break
        group = next(groups)
        lr = schedule.learning_rate(run.step)
        loss = _optimizer_step(prepared, objective, optimizer, params, group, lr, run.step)
        run.record(loss, sum(r.sample_tokens for r in group))
        schedule.replan(run.step, run.elapsed)
        if on_progress is not None:
            on_progress(run.report(schedule.total, steps_per_epoch, lr))
    prepared.model.eval()
    return run.result(resolved)


def _optimizer_step(
    prepared: Prepared,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    group: list[PackedBatch],
    lr: float,
    step: int,
) -> float:
    """One optimizer step at ``lr`` over ``group``'s rows, each weighted by the objective (its
    trained tokens, or pairs); returns the step's loss. A loss that is not finite raises
    :class:`FloatingPointError`."""
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    weights = [objective.weight(r) for r in group]
    weight_sum = sum(weights)
    loss = sum(_micro_step(prepared, objective, r, w / weight_sum) for r, w in zip(group, weights, strict=True))
    if not math.isfinite(loss):
        raise FloatingPointError(f"The training loss became {loss} at step {step + 1}.")
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


@dataclass
class _Run:
    """What the loop has done so far: steps, tokens, losses, time."""

    start: float
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    stopped: bool = False
    losses: list[float] = field(default_factory=list)

    def record(self, loss: float, tokens: int) -> None:
        self.step += 1
        self.tokens += tokens
        self.losses.append(loss)
        self.elapsed = time.monotonic() - self.start

    def report(self, total: int, steps_per_epoch: int, lr: float) -> dict[str, float]:
        """The ``on_progress`` dict for the step just recorded."""
        return {
            "step": self.step,
            "total_steps": total,
            "epoch": round(self.step / steps_per_epoch, 3),
            "train_loss": round(self.losses[-1], 4),
            "learning_rate": lr,
            "tokens_per_second": round(self.tokens / self.elapsed, 1),
            "elapsed_s": round(self.elapsed, 1),
        }

    def result(self, resolved: Resolved) -> TrainResult:
        tail = self.losses[-10:]
        return TrainResult(
            steps=self.step,
            trained_tokens=self.tokens,
            seconds=time.monotonic() - self.start,
            final_loss=sum(tail) / len(tail) if tail else float("nan"),
            stopped_early=self.stopped,
            plan=resolved,
        )
