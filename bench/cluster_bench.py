"""The serve_bench load through engine replicas on Ray Serve, against the in-process engine; JSON.

Starts ``swaplora serve`` three times on the embedded SmolLM2 base in NF4 (fresh data directory
each time): in-process ("local"), ``--cluster local --replicas 1`` and ``--replicas 2`` (a Ray
instance started by the server, one CPU and ``--threads`` torch threads per replica). Each gets
tenant ``bench`` with ``--adapters`` random rank-``--rank`` adapters, a warm-up, then ``--repeat``
rounds of ``--streams`` concurrent streaming chats spread over every adapter, ``--tokens`` tokens
each (``ignore_eos``). Per cluster run it reads ``GET /v1/cluster/replicas``: requests, adapter
loads and the share of requests that found their adapter already held, per replica.

    .venv/bin/python bench/cluster_bench.py --streams 16 --adapters 8 --tokens 64

On one machine the replicas share its cores, so this judges routing and the cost of the hop
through Ray (cluster_vs_local), not throughput scaling, which needs one accelerator per replica.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from bench.engine_bench import load_parser  # noqa: E402
from bench.serve_bench import (  # noqa: E402
    create_tenant_with_adapters,
    load,
    load_description,
    percentile,
    start_server,
    stop_server,
)
from tests.conftest import make_lora  # noqa: E402


def run(setup: str, flags: tuple[str, ...], args: Any, model_dir: Path, paths: list[Path], tmp: Path) -> dict:
    """One server, the warm-up and the rounds; the figures of ``setup``."""
    admin_key = secrets.token_hex(16)
    process, url = start_server(tmp / f"data-{setup}", model_dir, admin_key, args.threads, *flags, ready_s=600)
    try:
        key, models = create_tenant_with_adapters(url, admin_key, paths)
        mixed = [models[i % len(models)] for i in range(args.streams)]
        texts = [f"Write a long story about dragon number {i}." for i in range(args.streams)]
        asyncio.run(load(url, key, models, texts[: len(models)], 4))  # warm-up: every adapter lands once
        before = replica_stats(url, admin_key)
        rounds = [asyncio.run(load(url, key, mixed, texts, args.tokens)) for _ in range(args.repeat)]
        after = replica_stats(url, admin_key)
    finally:
        stop_server(process)
    ttft = [t for r in rounds for t in r["ttft"]]
    result: dict[str, Any] = {
        "tok_s": statistics.median(r["tok_s"] for r in rounds),
        "runs": [round(r["tok_s"], 1) for r in rounds],
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
    }
    if after is not None:
        requests = sum(r["requests"] - before.get(n, {}).get("requests", 0) for n, r in after.items())
        held = sum(
            r["requests_adapter_held"] - before.get(n, {}).get("requests_adapter_held", 0) for n, r in after.items()
        )
        result["replicas"] = {
            name: {"requests": r["requests"], "adapter_loads": r["adapter_loads"], "adapters": len(r["adapters"])}
            for name, r in after.items()
        }
        result["held_after_warm_up"] = held / requests if requests else None
        result["adapter_loads"] = sum(r["adapter_loads"] for r in after.values())
    return result


def grown(before: dict[str, dict], after: dict[str, dict], field: str) -> int:
    """How much ``field`` grew over every replica between two reads of ``/v1/cluster/replicas``."""
    return sum(r[field] - before.get(name, {}).get(field, 0) for name, r in after.items())


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def replica_stats(url: str, admin_key: str) -> dict[str, dict] | None:
    response = httpx.get(f"{url}/v1/cluster/replicas", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return {r["id"]: r for r in response.json()["data"]}


def main() -> None:
    parser = load_parser(__doc__.splitlines()[0], repeat=2, naive_requests=0)
    args = parser.parse_args()
    model_dir = prepare_embedded_model(ROOT / "data" / "models")
    setups = {
        "local": (),
        "cluster_1": ("--cluster", "local", "--replicas", "1"),
        "cluster_2": ("--cluster", "local", "--replicas", "2"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_lora(model_dir, Path(tmp) / "loras" / f"a{i}", args.rank, seed=i) for i in range(args.adapters)]
        results = {name: run(name, flags, args, model_dir, paths, Path(tmp)) for name, flags in setups.items()}
    local = results["local"]["tok_s"]
    summary = {
        **load_description(args),
        **results,
        "cluster_1_vs_local": results["cluster_1"]["tok_s"] / local,
        "cluster_2_vs_local": results["cluster_2"]["tok_s"] / local,
        "load_average": os.getloadavg(),
        "cpu": machine_info(),
    }
    print(json.dumps(rounded(summary)))


if __name__ == "__main__":
    main()
