"""The engine's attention: transformers' ``sdpa``, but a CPU prefill over cached keys never
repeats the key/value heads.

Contract: :func:`attention` is a transformers attention function (the ``AttentionInterface``
signature). On CPU, for a grouped-query model (``num_key_value_groups`` > 1), more than one query
position and a mask (a prefill that continues a cache: a prefix-cache hit, a chunked prompt), it
calls torch's ``scaled_dot_product_attention`` with ``enable_gqa=True``; everything else (decode
steps, which transformers already packs per key/value head; a prefill from scratch, which it runs
causal with ``enable_gqa``; any other device) goes to transformers' ``sdpa`` unchanged. Same
kernel, same result (tested against ``sdpa``). :func:`use` registers it (with ``sdpa``'s mask)
under :data:`NAME` and sets a model to it.

Why: with a mask transformers copies every layer's keys and values ``num_key_value_groups`` times
before attention; for SmolLM2 (9 query heads, 3 key/value heads) a grounded question's prefill
over ~740 cached positions spent ~4 ms of its time to first token on those copies on the 2-core CPU
(bench/grounding_bench.py's time to first token).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "swaplora_sdpa"


def _grouped_prefill(module: torch.nn.Module, query: torch.Tensor, mask: torch.Tensor | None, **kwargs: Any) -> bool:
    return (
        query.device.type == "cpu"
        and getattr(module, "num_key_value_groups", 1) > 1
        and query.shape[2] > 1
        and mask is not None
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    )


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``[batch, heads, queries, dim]`` queries over ``[batch, kv_heads, keys, dim]`` keys and
    values -> ``[batch, queries, heads, dim]``, as ``sdpa`` returns it."""
    if dropout or not _grouped_prefill(module, query, attention_mask, **kwargs):
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
        return out, None
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def use(model: torch.nn.Module) -> None:
    """Register :func:`attention` (idempotent) and set ``model`` to it (a transformers model; any
    other module is left as it is)."""
    if not isinstance(model, PreTrainedModel):
        return
    AttentionInterface.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
