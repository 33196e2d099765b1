"""The base the engine replicas serve, as the HTTP process knows it: facts, no weights.

Contract: :meth:`BaseFacts.of` takes the picklable facts of a loaded base on a replica;
:meth:`BaseFacts.with_tokenizer` adds the HTTP process's own tokenizer (loaded from the same model
directory) after checking both describe the same base (the spec hash), so prompts rendered here
are the prompts the replicas were built for. It satisfies
:class:`adapters.base_model.ServedBase`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapters.base_model import BaseModelError, BaseModelSpec, LoadedBase, load_tokenizer, spec_for
from adapters.execution_plan import ExecutionPlan

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class BaseFacts:
    spec: BaseModelSpec
    device: torch.device
    context_length: int
    eos_token_ids: frozenset[int]
    plan: ExecutionPlan
    linear_shapes: dict[str, tuple[int, int]]
    """What uploaded adapters are checked against (as in :class:`adapters.base_model.LoadedBase`)."""
    tokenizer: Any = None
    """The HTTP process's tokenizer (None as the replica sends it)."""

    @classmethod
    def of(cls, base: LoadedBase) -> BaseFacts:
        return cls(base.spec, base.device, base.context_length, base.eos_token_ids, base.plan, base.linear_shapes)

    def with_tokenizer(self, model_dir: Path) -> BaseFacts:
        """These facts with the tokenizer of ``model_dir``, which must be the replicas' base."""
        tokenizer: PreTrainedTokenizerBase = load_tokenizer(model_dir)
        local = spec_for(model_dir, tokenizer)
        if local.hash != self.spec.hash:
            raise BaseModelError(
                f"{model_dir} is not the base the engine replicas serve ({self.spec.name}, spec "
                f"{self.spec.hash[:12]}); give the server and the replicas the same model."
            )
        return replace(self, tokenizer=tokenizer)
