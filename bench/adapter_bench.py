"""Adapter cold load (disk -> ready to serve) as the store grows, and memory over load/evict cycles.

Prints one JSON object:

- ``cold_load_ms``: p50/p95 of resolve (store lookup of ``tenant/name``) + safetensors read + the
  loaded form (:func:`server.engine.lora_stack.load_lora`: transposed, scaled, grouped A/B in the serving
  dtype) for a rank-``--rank`` all-linear adapter of the embedded model, measured with 1, 100 and
  500 adapters registered in the store. ``cold`` evicts the weights file from the page cache first
  (``posix_fadvise(DONTNEED)``), so the bytes come from the disk; ``warm`` reads them from the page
  cache (what a recently written or recently evicted adapter costs).
- ``stack8_ms``: joining 8 loaded adapters into one multi-adapter stack (done once per new batch mix).
- ``rss``: resident memory of this process over ``--cycles`` acquire/evict cycles through
  :class:`server.engine.adapter_cache.AdapterCache` with budgets that hold one adapter on the device tier
  and two on the host tier, cycling over 6 adapters (every acquire evicts): RSS at every tenth of
  the run and its largest deviation from the value after warm-up.

    .venv/bin/python bench/adapter_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.ids import AdapterRef  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from adapters.store import AdapterStore  # noqa: E402
from server.engine.adapter_cache import AdapterCache, AdapterHandle  # noqa: E402
from server.engine.lora_stack import concat, load_lora  # noqa: E402
from tests.adapters.test_manifest import make_manifest  # noqa: E402
from tests.conftest import make_lora  # noqa: E402

FILES = ("adapter_config.json", "adapter_model.safetensors")
CPU = torch.device("cpu")


def publish(store: AdapterStore, name: str, source: Path) -> None:
    store.publish(
        "bench",
        name,
        {f: source / f for f in FILES},
        lambda version: make_manifest(tenant="bench", name=name, version=version),
    )


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_load(store: AdapterStore, name: str, cold: bool) -> float:
    if cold:
        drop_page_cache(store.resolve(AdapterRef("bench", name, None)).path / FILES[1])
    started = time.perf_counter()
    resolved = store.resolve(AdapterRef("bench", name, None))
    load_lora(resolved.path, torch.float32, CPU)
    return (time.perf_counter() - started) * 1000


def cold_loads(store: AdapterStore, sources: list[Path], filler: Path, samples: int) -> dict:
    """Time ``samples`` loads at each store size (1, 100, 500 registered adapters)."""
    figures: dict[str, dict] = {}
    registered = 0
    for size in (1, 100, 500):
        names = [f"big-{size}-{i}" for i in range(min(samples, size))]
        for i, name in enumerate(names):
            publish(store, name, sources[i % len(sources)])
        registered += len(names)
        while registered < size:
            publish(store, f"filler-{registered}", filler)
            registered += 1
        for kind in ("cold", "warm"):
            times = [timed_load(store, names[i % len(names)], cold=kind == "cold") for i in range(samples)]
            figures.setdefault(kind, {})[str(size)] = {
                "p50": round(statistics.median(times), 1),
                "p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 1),
            }
    return figures


def rss_cycles(sources: list[Path], cycles: int) -> dict:
    one = load_lora(sources[0], torch.float32, CPU).nbytes
    cache = AdapterCache(lambda path: load_lora(path, torch.float32, CPU), one, 2 * one, CPU)
    handles = [AdapterHandle(f"bench/a{i}@1", sources[i % len(sources)]) for i in range(6)]
    process = psutil.Process()
    samples = []
    for cycle in range(cycles):
        handle = handles[cycle % len(handles)]
        cache.acquire(handle)
        cache.release(handle)
        if (cycle + 1) % max(1, cycles // 10) == 0:
            samples.append(process.memory_info().rss)
    reference = samples[0]
    return {
        "cycles": cycles,
        "rss_mb": [round(s / 2**20, 1) for s in samples],
        "max_deviation_from_first_sample": round(max(abs(s - reference) for s in samples) / reference, 4),
        "adapter_mb": round(one / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--samples", type=int, default=10, help="adapters timed at each store size")
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    model_dir = prepare_embedded_model(ROOT / "data" / "models")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = [make_lora(model_dir, root / f"src{i}", args.rank, seed=i) for i in range(3)]
        filler = make_lora(model_dir, root / "filler", 1, seed=9, modules=["q_proj"])
        store = AdapterStore(root / "store")
        result = {
            "rank": args.rank,
            "targets": "all-linear",
            "dtype": "float32",
            "device": "cpu",
            "cold_load_ms": cold_loads(store, sources, filler, args.samples),
        }
        ready = [load_lora(sources[i % 3], torch.float32, CPU) for i in range(8)]
        times = []
        for _ in range(5):
            started = time.perf_counter()
            concat(ready)
            times.append((time.perf_counter() - started) * 1000)
        result["stack8_ms"] = round(statistics.median(times), 1)
        result["rss"] = rss_cycles(sources, args.cycles)
    result["load_average"] = os.getloadavg()
    result["cpu"] = machine_info()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
