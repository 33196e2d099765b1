"""The two forms an NF4 base can compute in, both with exactly NF4's numbers.

- **packed** (``weights="nf4"``): bitsandbytes' ``Linear4bit`` layers stay as loaded; each forward
  dequantizes (or, with AVX512-BF16 and bf16 compute, runs bitsandbytes' fused CPU kernel; on CUDA
  its CUDA kernels). :func:`apply_plan` sets their compute dtype.
- **dense** (``weights="dense"``): every ``Linear4bit`` is replaced by an :class:`NF4DenseLinear`
  whose weight is the layer's NF4 weight dequantized once, exactly as bitsandbytes' inference
  kernels dequantize it at every forward (same codes, block scales and double quantization,
  rounded once to the compute dtype). It costs memory (2 or 4 bytes per weight instead of
  about 0.5) and saves the dequantization of every weight at every step, which on a CPU without
  a fused NF4 kernel is most of a decode step.

Either way the parameters that were never quantized (embeddings, norms, the output head) are
cast to the compute dtype; they were loaded in the storage dtype (bf16), so fp32 holds them
exactly. The quantized weights themselves are the same bits in every plan: an adapter sees the
same base whichever plan trained or serves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard, cast

import torch

from adapters.execution_plan import ExecutionPlan

if TYPE_CHECKING:
    from bitsandbytes.nn.modules import Linear4bit


class NF4DenseLinear(torch.nn.Linear):
    """A frozen linear layer whose weight holds an NF4 weight's dequantized values.

    Like bitsandbytes' ``Linear4bit`` it computes in its weight's dtype and answers in the input's
    dtype, so it drops in wherever the packed layer was: under k-bit training preparation the
    residual stream stays fp32 while the matmuls run in the plan's dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.weight.dtype
        if x.dtype == dtype:
            return super().forward(x)
        return super().forward(x.to(dtype)).to(x.dtype)


def is_packed_nf4(module: torch.nn.Module) -> TypeGuard[Linear4bit]:
    """True for bitsandbytes' 4-bit linear layer (without importing bitsandbytes eagerly)."""
    return type(module).__name__ in ("Linear4bit", "LinearNF4") and hasattr(module.weight, "quant_state")


def dequantized_weight(module: Linear4bit, dtype: torch.dtype) -> torch.Tensor:
    """The NF4 weight of a ``Linear4bit`` dequantized straight into ``dtype``, exactly as
    bitsandbytes' inference GEMM (``bitsandbytes::gemm_4bit``) does for inputs of that dtype: the
    double-quantized block scales decoded in fp32, then code times scale rounded once to ``dtype``.
    (``bitsandbytes.functional.dequantize_4bit`` rounds the scales to the storage dtype first.)"""
    import bitsandbytes  # noqa: F401  (registers the torch.ops.bitsandbytes kernels)
    from bitsandbytes.nn.modules import Params4bit

    weight = module.weight
    assert isinstance(weight, Params4bit)  # torch declares nn.Linear.weight a Tensor
    state = weight.quant_state
    assert state is not None  # is_packed_nf4: a quantized layer always has its state
    if getattr(state, "packing_format_for_cpu", False):
        raise RuntimeError("the layer was repacked for the fused CPU kernel; dequantize before any forward")
    ops = torch.ops.bitsandbytes
    absmax = state.absmax
    if state.nested:
        absmax = (
            ops.dequantize_blockwise.default(
                state.absmax, state.state2.absmax, state.state2.code, state.state2.blocksize, torch.float32
            )
            + state.offset
        )
    dequantized = ops.dequantize_4bit.default(
        weight.data.view(-1, 1), absmax, state.blocksize, state.quant_type, state.shape, dtype
    )
    return cast(torch.Tensor, dequantized)


def densify(module: Linear4bit, dtype: torch.dtype) -> NF4DenseLinear:
    """An :class:`NF4DenseLinear` computing what ``module`` (a ``Linear4bit``) computes."""
    weight = dequantized_weight(module, dtype)
    dense = NF4DenseLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
    dense.weight = torch.nn.Parameter(weight, requires_grad=False)
    if module.bias is not None:
        dense.bias = torch.nn.Parameter(module.bias.detach().to(dtype), requires_grad=False)
    return dense


def apply_plan(model: torch.nn.Module, plan: ExecutionPlan) -> torch.nn.Module:
    """Put ``model`` (an NF4-loaded base) in ``plan``'s form, in place; returns it."""
    dtype = plan.dtype
    packed = [(name, module) for name, module in model.named_modules() if is_packed_nf4(module)]
    for name, module in packed:
        if plan.weights == "dense":
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, densify(module, dtype))
        else:
            module.compute_dtype = dtype
            module.compute_type_is_set = True
            if dtype != torch.bfloat16:
                # bitsandbytes' fused AVX512-BF16 kernel casts inputs and scales to bf16 whatever the
                # compute dtype: an fp32 plan would silently compute in bf16.
                module.support_avx512bf16_for_cpu = False
    keep = {id(p) for _, m in packed if plan.weights != "dense" for p in m.parameters(recurse=False)}
    for param in model.parameters():
        if id(param) not in keep and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    for buffer_owner in model.modules():
        for key, buffer in buffer_owner.named_buffers(recurse=False):
            # rotary frequencies and the like stay fp32; only storage-dtype buffers follow the plan
            if buffer.is_floating_point() and buffer.dtype == torch.bfloat16 and dtype != torch.bfloat16:
                setattr(buffer_owner, key, buffer.to(dtype))
    if hasattr(model, "config"):
        model.config.dtype = dtype
    return model
