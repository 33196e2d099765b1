"""Retrieval on the embedded model: recall and time to first token with and without it; JSON.

Starts ``swaplora serve`` (embedded SmolLM2-135M in NF4, a fresh data directory), creates tenant
``lumen``, uploads examples/handbook.md and asks every question of
tests/trainer/handbook_probes.json (phrased unlike the handbook) twice, interleaved: with the
tenant's retrieval off and on (``top_k`` passages of the handbook). Greedy, ``--max-tokens``,
streamed, so time to first token is measured as a client sees it. A reply counts as correct when
:func:`trainer.recall.answer_matches` finds an expected term. ``--model`` names an adapter to ask
instead of the base (e.g. one ``swaplora train`` published into ``--data``).

    .venv/bin/python bench/grounding_bench.py

Prints recall for base and retrieval + base (or the adapter's), the TTFT medians and their ratio,
the prompt tokens each way, and the misses.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from bench.serve_bench import start_server, stop_server  # noqa: E402
from trainer.recall import answer_matches  # noqa: E402

HANDBOOK = ROOT / "examples" / "handbook.md"
PROBES = ROOT / "tests" / "trainer" / "handbook_probes.json"


def ask(http: httpx.Client, key: str, model: str, question: str, max_tokens: int) -> dict:
    """One streamed greedy answer: its text, time to first token, prompt tokens, citations."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first, text, prompt_tokens, cited = None, "", 0, None
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                prompt_tokens = chunk["usage"]["prompt_tokens"]
            cited = chunk.get("citations", cited)
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    first = first or time.perf_counter() - started
                    text += choice["delta"]["content"]
    return {"text": text, "ttft": first, "prompt_tokens": prompt_tokens, "citations": cited}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="the model to ask (default base)")
    parser.add_argument("--data", type=Path, help="data directory (default: a new temporary one)")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: the server's default)")
    args = parser.parse_args()
    probes = json.loads(PROBES.read_text())
    model_dir = prepare_embedded_model(ROOT / "data" / "models")
    admin_key = secrets.token_hex(16)
    admin = {"Authorization": f"Bearer {admin_key}"}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        process, url = start_server(data, model_dir, admin_key, args.threads)
        try:
            with httpx.Client(base_url=url, timeout=600) as http:
                created = http.post("/v1/tenants", json={"id": "lumen"}, headers=admin)
                key = created.json()["api_key"] if created.status_code == 201 else None
                if key is None:  # an existing data directory: a new key for the tenant
                    key = http.post("/v1/tenants/lumen/keys", json={"kind": "secret"}, headers=admin).json()["api_key"]
                files = {"file": (HANDBOOK.name, HANDBOOK.read_bytes(), "text/markdown")}
                file_id = http.post(
                    "/v1/files", headers=admin, data={"purpose": "fine-tune", "tenant": "lumen"}, files=files
                ).json()["id"]
                ask(http, key, args.model, "Hello", 4)  # warm-up
                runs: dict[str, list[dict]] = {"without": [], "with": []}
                for probe in probes:
                    for mode in ("without", "with"):
                        setting = {"enabled": mode == "with", "files": [file_id], "top_k": args.top_k}
                        http.patch("/v1/tenants/lumen", json={"retrieval": setting}, headers=admin).raise_for_status()
                        result = ask(http, key, args.model, probe["question"], args.max_tokens)
                        result["correct"] = answer_matches(result["text"], probe["expect"])
                        result["question"] = probe["question"]
                        runs[mode].append(result)
        finally:
            stop_server(process)
    summary: dict = {"model": args.model, "questions": len(probes), "top_k": args.top_k, "max_tokens": args.max_tokens}
    for mode, results in runs.items():
        summary[f"recall_{mode}_retrieval"] = sum(r["correct"] for r in results) / len(results)
        summary[f"ttft_p50_{mode}_s"] = statistics.median(r["ttft"] for r in results if r["ttft"] is not None)
        summary[f"prompt_tokens_p50_{mode}"] = statistics.median(r["prompt_tokens"] for r in results)
    summary["ttft_with_vs_without"] = summary["ttft_p50_with_s"] / summary["ttft_p50_without_s"]
    summary["misses_with_retrieval"] = [
        {"question": r["question"], "answer": r["text"][:120]} for r in runs["with"] if not r["correct"]
    ]
    summary["load_average"] = os.getloadavg()
    summary["cpu"] = machine_info()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
