"""In-process engine throughput on the embedded model, against naive PEFT serving, in one run.

Prints one JSON object. Loads: ``base`` alone; every stream on one adapter; streams spread over
``--adapters`` adapters (the batched LoRA path); and the naive baseline, PEFT ``set_adapter`` +
``generate`` one request at a time over the same adapters and prompts. Every request decodes
greedily for exactly ``--tokens`` tokens (EOS ignored via ``stop``-free long prompts is not
guaranteed, so tokens/s counts the tokens actually generated).

    .venv/bin/python bench/engine_bench.py --streams 16 --adapters 8 --tokens 64

The HTTP-level benchmark with TTFT/ITL percentiles (bench/serve_bench.py) is a later issue's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import load_base  # noqa: E402
from adapters.embedded import prepare_embedded_model  # noqa: E402
from server.adapter_cache import AdapterHandle  # noqa: E402
from server.engine import Engine, Finished, GenerationRequest  # noqa: E402
from server.sampling import SamplingParams  # noqa: E402
from tests.conftest import make_lora  # noqa: E402


def prompts(tokenizer, n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write a long story about dragon number {i}."}],
            add_generation_prompt=True,
            tokenize=False,
        )
        out.append(tokenizer(text, add_special_tokens=False).input_ids)
    return out


def engine_load(engine: Engine, ids: list[list[int]], adapters: list[AdapterHandle | None], tokens: int) -> float:
    """Submit everything at once; tokens per second until the last request finishes."""
    done, generated, lock = threading.Semaphore(0), [0], threading.Lock()

    def emit(event) -> None:
        if isinstance(event, Finished):
            with lock:
                generated[0] += event.completion_tokens
            done.release()

    started = time.perf_counter()
    for prompt, adapter in zip(ids, adapters):
        engine.submit(GenerationRequest(prompt, SamplingParams(tokens, temperature=0), adapter, emit))
    for _ in ids:
        done.acquire()
    return generated[0] / (time.perf_counter() - started)


def naive_peft(model_dir: Path, paths: list[Path], ids: list[list[int]], tokens: int) -> float:
    """PEFT set_adapter + generate, one request at a time (the baseline to beat)."""
    from peft import PeftModel

    base = load_base(model_dir)
    model = PeftModel.from_pretrained(base.model, str(paths[0]), adapter_name="a0")
    for i, path in enumerate(paths[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"a{i}")
    model.eval()
    generated, started = 0, time.perf_counter()
    for n, prompt in enumerate(ids):
        model.set_adapter(f"a{n % len(paths)}")
        inputs = torch.tensor([prompt])
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=tokens, do_sample=False)
        generated += out.shape[1] - inputs.shape[1]
    return generated / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--naive-requests", type=int, default=8, help="requests for the (slow) naive baseline")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    model_dir = prepare_embedded_model(Path("data/models"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_lora(model_dir, Path(tmp) / f"a{i}", args.rank, seed=i) for i in range(args.adapters)]
        handles = [AdapterHandle(f"bench/a{i}@1", p) for i, p in enumerate(paths)]
        engine = Engine(load_base(model_dir), max_batch_size=args.streams)
        engine.start()
        ids = prompts(engine.base.tokenizer, args.streams)
        engine_load(engine, ids[:2], handles[:2], 4)  # warm-up and first adapter loads
        result = {
            "model": "SmolLM2-135M-Instruct NF4", "device": str(engine.base.device), "threads": torch.get_num_threads(),
            "streams": args.streams, "adapters": args.adapters, "rank": args.rank, "tokens": args.tokens,
            "base_1_stream_tok_s": engine_load(engine, ids[:1], [None], args.tokens),
            "lora_1_stream_tok_s": engine_load(engine, ids[:1], handles[:1], args.tokens),
            "base_tok_s": engine_load(engine, ids, [None] * len(ids), args.tokens),
            "one_adapter_tok_s": engine_load(engine, ids, [handles[0]] * len(ids), args.tokens),
            "mixed_adapters_tok_s": engine_load(engine, ids, [handles[i % len(handles)] for i in range(len(ids))], args.tokens),
        }
        engine.stop()
        result["naive_peft_tok_s"] = naive_peft(model_dir, paths, ids[: args.naive_requests], args.tokens)
    result["mixed_vs_naive"] = result["mixed_adapters_tok_s"] / result["naive_peft_tok_s"]
    result["mixed_vs_one_adapter"] = result["mixed_adapters_tok_s"] / result["one_adapter_tok_s"]
    result["lora_overhead_1_stream"] = 1 - result["lora_1_stream_tok_s"] / result["base_1_stream_tok_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
