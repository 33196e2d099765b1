"""Serving throughput through real HTTP, against naive PEFT serving, in one run; prints JSON.

Starts ``swaplora serve`` (a subprocess, free port, temporary data directory, the embedded
SmolLM2 base in NF4), creates a tenant, uploads ``--adapters`` random rank-``--rank`` all-linear
PEFT adapters through the API, then fires ``--streams`` concurrent streaming chats with the
official ``openai`` client, spread over every adapter ("mixed"), and the same load on one adapter
("single"). Every request generates exactly ``--tokens`` tokens (``ignore_eos``; counted from
``usage``). After the server stops (so the two never compete for the CPU), the naive baseline
runs in-process: PEFT ``set_adapter`` + ``generate``, one request at a time, same prompts.

    .venv/bin/python bench/serve_bench.py --streams 16 --adapters 8 --tokens 64

Figures: tokens/s of each load (median of ``--repeat`` rounds), mixed/naive and mixed/single,
time to first token p50/p95 and inter-token gap p50 of the mixed load, the machine's load average.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from bench.engine_bench import load_parser, naive_peft, prompts  # noqa: E402
from tests.conftest import make_lora  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    data: Path, model_dir: Path, admin_key: str, threads: int, *flags: str, ready_s: float = 180
) -> tuple[subprocess.Popen, str]:
    """``swaplora serve --no-ui [flags]`` on a free port; returns once ``/ready`` says so."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPLORA_")}
    env.update(SWAPLORA_DATA=str(data), SWAPLORA_ADMIN_KEY=admin_key, SWAPLORA_LOG_LEVEL="warning", HF_HUB_OFFLINE="1")
    if threads:  # 0: the server's own default
        env["SWAPLORA_TORCH_THREADS"] = str(threads)
    log = open(data.parent / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swaplora.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(model_dir),
            "--no-ui",
            *flags,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {(data.parent / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server not ready in {ready_s:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def one_stream(client: openai.AsyncOpenAI, model: str, text: str, tokens: int) -> dict:
    started = time.perf_counter()
    arrivals: list[float] = []
    usage = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage:
            usage = chunk.usage.completion_tokens
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    return {"ttft": arrivals[0] - started if arrivals else float("nan"), "gaps": gaps, "tokens": usage}


async def load(url: str, key: str, models: list[str], texts: list[str], tokens: int) -> dict:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(client, m, t, tokens) for m, t in zip(models, texts)))
    wall = time.perf_counter() - started
    await client.close()
    generated = sum(r["tokens"] for r in results)
    return {
        "tok_s": generated / wall,
        "tokens": generated,
        "ttft": [r["ttft"] for r in results],
        "gaps": [g for r in results for g in r["gaps"]],
    }


def create_tenant_with_adapters(url: str, admin_key: str, paths: list[Path]) -> tuple[str, list[str]]:
    """Tenant ``bench`` with adapter ``a<i>`` uploaded from each of ``paths``: its key, the served ids."""
    with httpx.Client(base_url=url, timeout=120) as http:
        created = http.post("/v1/tenants", json={"id": "bench"}, headers={"Authorization": f"Bearer {admin_key}"})
        created.raise_for_status()
        key = created.json()["api_key"]
        models = []
        for i, path in enumerate(paths):
            files = [
                ("files", (f.name, f.read_bytes(), "application/octet-stream"))
                for f in (path / "adapter_config.json", path / "adapter_model.safetensors")
            ]
            response = http.post(
                "/v1/adapters", headers={"Authorization": f"Bearer {key}"}, data={"name": f"a{i}"}, files=files
            )
            response.raise_for_status()
            models.append(response.json()["id"])
    return key, models


def load_description(args: Any) -> dict[str, Any]:
    """What every serving bench's JSON says of its load (the shared options of ``load_parser``)."""
    return {
        "model": "SmolLM2-135M-Instruct NF4 via swaplora serve",
        "streams": args.streams,
        "adapters": args.adapters,
        "rank": args.rank,
        "tokens": args.tokens,
        "repeat": args.repeat,
        "threads": args.threads,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = load_parser(__doc__.splitlines()[0], repeat=2, naive_requests=8)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_dir = prepare_embedded_model(ROOT / "data" / "models")
    from adapters.base_model import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    texts = [f"Write a long story about dragon number {i}." for i in range(args.streams)]
    admin_key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_lora(model_dir, Path(tmp) / "loras" / f"a{i}", args.rank, seed=i) for i in range(args.adapters)]
        data = Path(tmp) / "data"
        process, url = start_server(data, model_dir, admin_key, args.threads)
        try:
            key, models = create_tenant_with_adapters(url, admin_key, paths)
            mixed_models = [models[i % len(models)] for i in range(args.streams)]
            asyncio.run(load(url, key, mixed_models[:4], texts[:4], 4))  # warm-up, first adapter loads
            plan = httpx.get(f"{url}/ready", timeout=5).json()["execution_plan"]["name"]
            rounds: dict[str, list[dict]] = {"mixed": [], "single": []}
            for _ in range(args.repeat):
                rounds["mixed"].append(asyncio.run(load(url, key, mixed_models, texts, args.tokens)))
                rounds["single"].append(asyncio.run(load(url, key, [models[0]] * args.streams, texts, args.tokens)))
        finally:
            stop_server(process)
        ids = prompts(tokenizer, args.naive_requests)
        naive = naive_peft(model_dir, paths, ids, args.tokens)
    mixed = statistics.median(r["tok_s"] for r in rounds["mixed"])
    single = statistics.median(r["tok_s"] for r in rounds["single"])
    ttft = [t for r in rounds["mixed"] for t in r["ttft"]]
    gaps = [g for r in rounds["mixed"] for g in r["gaps"]]
    result = {
        **load_description(args),
        "mixed_tok_s": mixed,
        "single_adapter_tok_s": single,
        "naive_peft_tok_s": naive,
        "mixed_runs": [round(r["tok_s"], 1) for r in rounds["mixed"]],
        "single_runs": [round(r["tok_s"], 1) for r in rounds["single"]],
        "tokens_per_round": rounds["mixed"][0]["tokens"],
        "mixed_vs_naive": mixed / naive,
        "mixed_vs_single": mixed / single,
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
        "inter_token_p50_s": percentile(gaps, 0.5),
        "load_average": os.getloadavg(),
        "cpu": machine_info(),
        "plan": plan,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
