"""What this machine is, in the terms that decide how fast the base runs on it.

:func:`machine_info` names the CPU (model, torch's kernel capability, the instruction-set
extensions that matter for bf16 and 4-bit matmuls), the cores this process may use, the memory,
and the accelerator if any. Every benchmark prints it next to its figures, and the execution
plan's cache (:mod:`adapters.execution_plan`) keys its measurements by it: a plan measured on an
AVX-512 machine is never reused on an AVX2 one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import cache
from typing import Any

import torch

_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
"""CPU flags (as /proc/cpuinfo spells them) that change which matmul kernels torch and
bitsandbytes can use."""


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def total_memory_bytes() -> int:
    """Physical memory of the machine (0 when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


@cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or "unknown", frozenset[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "", "x86_64"):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def machine_info() -> dict[str, Any]:
    """The machine as a JSON-ready dict (see the module docstring)."""
    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "cpu_model": model,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": [flag for flag in _FLAGS_OF_INTEREST if flag in flags],
        "cores": usable_cores(),
        "memory_gib": round(total_memory_bytes() / 2**30, 1),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def machine_key() -> str:
    """A short stable hash of what :func:`machine_info` says (versions included)."""
    info = machine_info()
    info.pop("memory_gib", None)  # a resized VM keeps its kernels
    try:
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        info["bitsandbytes"] = None
    # ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA change which kernels run without changing the CPU.
    info["env"] = {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
