"""The CUDA path in one run, on a random-weight model built from a config: NF4, engine, trainer.

Prints one JSON object (and writes it to ``--out`` after every phase, so a run cut short still
leaves what it measured). Meant for a lent GPU machine, where no model can be downloaded and
bitsandbytes is not installed; ``make device-bundle`` prepares both here (see README,
"GPU check"). With ``--shape tiny --device cpu`` it runs in seconds on the CPU (the test suite
does that, so the script cannot rot between GPU sessions).

Phases:

1. **Model**: a Llama of ``--shape`` (``8b``: Llama-3-8B's widths and depth, with the embedded
   tokenizer's vocabulary) with random weights, saved as safetensors next to the embedded
   tokenizer; then loaded through :func:`adapters.base_model.load_base`, the server's one loader
   (NF4, double quantization, bf16 compute). Reports the 4-bit layers, the device memory and a
   forward pass (finite logits).
2. **Engine**: random rank-``--rank`` all-linear PEFT adapters, then
   :class:`server.engine.step_loop.Engine` loads, ``--repeat`` interleaved rounds of greedy decoding of
   ``--tokens`` tokens each (every request is admitted and prefilled as the server does it, so
   the figures include the batch filling up, as in ``bench/engine_bench.py``). Per ``--loads`` entry SxA
   (default 64x64 and 16x8): S streams on
   ``base`` alone, on one adapter, and spread over A adapters (the batched multi-adapter path);
   then one stream with and without an adapter.
   Reports tokens/s (medians, rounds alongside) and the ratios the engine issue names.
3. **Trainer**: :func:`trainer.qlora.prepare_model` on the same directory and ``--train-steps``
   optimizer steps on packed synthetic chat samples. Reports tokens/s, loss and peak memory.

    python3 bench/device_check.py --tokenizer .device/tokenizer --out $OUT/device_check.json
    .venv/bin/python bench/device_check.py --shape tiny --device cpu --loads 4x2 --tokens 4 \\
        --repeat 1 --train-steps 2
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base_model import load_base, pick_device
from adapters.execution_plan import PlanRequest
from adapters.hyperparameters import parse
from adapters.validation import KEY_PREFIX
from bench.engine_bench import engine_load, prompts, round_ratios
from bench.train_data import rounded
from server.engine.adapter_cache import AdapterHandle
from server.engine.step_loop import Engine
from trainer.packing import pack
from trainer.qlora import prepare_model, train
from trainer.tokenize import IGNORE_INDEX, EncodedSample

SHAPES: dict[str, dict[str, int]] = {
    "8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}
"""Llama widths and depths; the vocabulary is always the embedded tokenizer's."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def default_tokenizer_dir() -> Path:
    """The converted embedded model (its tokenizer files are all this script reads of it)."""
    from adapters.embedded import prepare_embedded_model

    return prepare_embedded_model(Path(__file__).resolve().parents[1] / "data" / "models")


def write_random_model(target: Path, shape: str, tokenizer_dir: Path, device: torch.device, seed: int) -> Path:
    """A Llama of ``shape`` with random bf16 weights (built on ``device``), saved under ``target``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target)
    del model
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, target / name)
    return target


def write_random_adapter(
    target: Path, shapes: dict[str, tuple[int, int]], rank: int, seed: int, device: torch.device
) -> Path:
    """A PEFT LoRA directory: rank ``rank`` on every module of ``shapes``, random non-zero A and B."""
    generator = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name, (fan_in, fan_out) in shapes.items():
        a = torch.randn(rank, fan_in, generator=generator, device=device) / fan_in**0.5
        b = torch.randn(fan_out, rank, generator=generator, device=device) * 0.01
        tensors[f"{KEY_PREFIX}{name}.lora_A.weight"] = a.to(torch.bfloat16).cpu()
        tensors[f"{KEY_PREFIX}{name}.lora_B.weight"] = b.to(torch.bfloat16).cpu()
    from safetensors.torch import save_file

    target.mkdir(parents=True)
    save_file(tensors, str(target / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "target_modules": sorted({name.rpartition(".")[2] for name in shapes}),
    }
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


def peak_memory_gb(device: torch.device) -> float:
    """Peak device memory since the last reset (CUDA), else this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def logical_numel(param: torch.Tensor) -> int:
    """Elements of the weight a parameter stands for (a packed 4-bit one stores half as many)."""
    state = getattr(param, "quant_state", None)
    return int(state.shape.numel()) if state is not None else param.numel()


def resident_memory_gb(device: torch.device) -> float | None:
    """Device memory held now (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device) / 2**30


def preflight(device: torch.device) -> dict:
    """Versions, and one NF4 round trip on ``device``: a missing CUDA library shows here, before
    minutes go into writing a model."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import peft
    import transformers

    weight = torch.randn(256, 256, device=device, dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    error = (bnbf.dequantize_4bit(packed, state) - weight).float().norm() / weight.float().norm()
    return {
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bnb.__version__,
        "nf4_round_trip_relative_error": float(error),
    }


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def nf4_phase(model_dir: Path, device: torch.device) -> tuple[dict, object]:
    """Load through the server's loader; what is 4-bit, how much memory, one forward pass."""
    import bitsandbytes as bnb

    reset_peak(device)
    started = time.perf_counter()
    # This phase checks the packed NF4 layers: on a CPU keep them packed whatever the plan's dtype.
    base = load_base(model_dir, str(device), request=PlanRequest(cpu_weights="nf4"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load_seconds = time.perf_counter() - started
    layers = [m for m in base.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    state = layers[0].weight.quant_state
    ids = torch.tensor([prompts(base.tokenizer, 1)[0]], device=device)
    with torch.no_grad():
        logits = base.model(input_ids=ids).logits
    return {
        "load_seconds": load_seconds,
        "linear4bit_layers": len(layers),
        "linear_layers": len(base.linear_shapes),
        "quant_type": state.quant_type,
        "double_quant": bool(layers[0].weight.compress_statistics),
        "double_quant_nested_state": bool(state.nested),  # False where a layer has too few blocks
        "compute_dtype": str(layers[0].compute_dtype),
        "plan": base.plan.name,
        "parameters_b": sum(logical_numel(p) for p in base.model.parameters()) / 1e9,
        "resident_memory_gb": resident_memory_gb(device),
        "peak_memory_gb": peak_memory_gb(device),
        "logits_finite": bool(torch.isfinite(logits).all()),
    }, base


def parse_load(text: str) -> tuple[int, int]:
    """``"64x64"`` -> (64 streams, 64 adapters)."""
    streams, _, adapters = text.partition("x")
    if not (streams.isdigit() and adapters.isdigit() and int(streams) >= 1 and int(adapters) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: expected STREAMSxADAPTERS, e.g. 64x64")
    return int(streams), int(adapters)


def engine_phase(base, args: argparse.Namespace, work: Path, device: torch.device) -> dict:
    """Per ``--loads`` entry S x A: S streams on ``base``, on one adapter and spread over A
    adapters; then one stream with and without an adapter."""
    started = time.perf_counter()
    most_streams = max(s for s, _ in args.loads)
    most_adapters = max(a for _, a in args.loads)
    paths = [
        write_random_adapter(work / f"a{i}", base.linear_shapes, args.rank, i, device) for i in range(most_adapters)
    ]
    adapter_params = sum(sum(t) for t in base.linear_shapes.values()) * args.rank
    handles = [AdapterHandle(f"check/a{i}@1", p) for i, p in enumerate(paths)]
    # Room for every adapter on the device, in fp32 (the CPU's LoRA dtype) at worst.
    engine = Engine(
        base,
        max_batch_size=most_streams,
        adapter_cache_bytes=4 * adapter_params * (most_adapters + 1),
        threads=1 if device.type == "cpu" else None,
    )
    ids = prompts(base.tokenizer, most_streams)
    loads: dict[str, list[AdapterHandle | None]] = {}
    for streams, adapters in args.loads:
        loads[f"{streams}x{adapters}.base_tok_s"] = [None] * streams
        loads[f"{streams}x{adapters}.one_adapter_tok_s"] = [handles[0]] * streams
        loads[f"{streams}x{adapters}.mixed_adapters_tok_s"] = [handles[i % adapters] for i in range(streams)]
    loads["base_1_stream_tok_s"], loads["lora_1_stream_tok_s"] = [None], [handles[0]]
    runs: dict[str, list[float]] = {name: [] for name in loads}
    engine.start()
    try:
        for chunk in range(0, most_adapters, most_streams):  # warm-up: every adapter loaded once
            engine_load(engine, ids, [handles[(chunk + i) % most_adapters] for i in range(most_streams)], 2)
        reset_peak(device)
        for _ in range(args.repeat):
            for name, adapters in loads.items():
                runs[name].append(engine_load(engine, ids[: len(adapters)], adapters, args.tokens))
    finally:
        engine.stop()
    result: dict = {"runs": runs}
    for name, values in runs.items():
        load, _, figure = name.rpartition(".")
        (result.setdefault(load, {}) if load else result)[figure] = statistics.median(values)

    def per_round(numerator: str, denominator: str) -> float:
        return statistics.median(round_ratios(runs, numerator, denominator))

    for streams, adapters in args.loads:
        load = f"{streams}x{adapters}"
        result[load]["mixed_vs_base"] = per_round(f"{load}.mixed_adapters_tok_s", f"{load}.base_tok_s")
        result[load]["mixed_vs_one_adapter"] = per_round(f"{load}.mixed_adapters_tok_s", f"{load}.one_adapter_tok_s")
    result["lora_overhead_1_stream"] = 1 - per_round("lora_1_stream_tok_s", "base_1_stream_tok_s")
    result["adapter_mb_bf16"] = adapter_params * 2 / 2**20
    result["peak_memory_gb"] = peak_memory_gb(device)
    result["seconds"] = time.perf_counter() - started
    return result


def synthetic_samples(tokenizer, n: int, answer_tokens: int, seed: int) -> list[EncodedSample]:
    """Chat prompts followed by random answer tokens; loss on the answers only."""
    rng = random.Random(seed)
    samples = []
    for prompt in prompts(tokenizer, n):
        answer = [rng.randrange(1000, 20000) for _ in range(answer_tokens)]
        samples.append(EncodedSample(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return samples


def trainer_phase(model_dir: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """QLoRA steps on packed samples through the trainer's own loader and loop."""
    hp = parse({"max_steps": args.train_steps, "n_epochs": 1, "max_seconds": 3600.0})
    reset_peak(device)
    prepared = prepare_model(model_dir, hp, device=str(device))
    row_tokens = hp.row_tokens(device.type)
    samples = synthetic_samples(prepared.tokenizer, args.train_samples, 128, args.seed)
    batches = pack(samples, row_tokens, args.seed)
    result = train(prepared, batches, hp, seed=args.seed)
    return {
        "steps": result.steps,
        "row_tokens": row_tokens,
        "rows_per_step": result.plan.gradient_accumulation_steps,
        "gradient_checkpointing": result.plan.gradient_checkpointing,
        "sample_tokens": result.trained_tokens,
        "seconds": result.seconds,
        "tokens_per_second": result.trained_tokens / result.seconds,
        "final_loss": result.final_loss,
        "peak_memory_gb": peak_memory_gb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    parser.add_argument("--device", default=None, help="default: cuda when present")
    parser.add_argument("--tokenizer", type=Path, default=None, help="default: the converted embedded model")
    parser.add_argument(
        "--loads",
        type=parse_load,
        nargs="+",
        default=[(64, 64), (16, 8)],
        help="STREAMSxADAPTERS engine loads (default: 64x64, the GPU figure, and 16x8, serve_bench's)",
    )
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians (the first round warms up)")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--train-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (after every phase)")
    args = parser.parse_args()
    device = pick_device(args.device)
    result: dict = {
        "shape": args.shape,
        "device": str(device),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }

    def record(phase: str, figures: dict) -> None:
        result[phase] = rounded(figures)
        print(f"[device_check] {phase}: {json.dumps(result[phase])[:400]}", file=sys.stderr, flush=True)
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2))

    record("preflight", preflight(device))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        model_dir = write_random_model(
            work / f"llama-{args.shape}-random",
            args.shape,
            args.tokenizer or default_tokenizer_dir(),
            device,
            args.seed,
        )
        record("model", {"write_seconds": time.perf_counter() - started})
        figures, base = nf4_phase(model_dir, device)
        record("nf4", figures)
        record("engine", engine_phase(base, args, work, device))
        del base
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        record("trainer", trainer_phase(model_dir, args, device))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
