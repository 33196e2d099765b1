"""The engine on a tiny random Llama: mixed-adapter continuous batching equals plain PEFT, row by
row; cancellation, stop strings, max_tokens and seeds behave; the NF4 path runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.base_model import load_base
from server.engine.adapter_cache import AdapterHandle
from server.engine.requests import GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.conftest import make_lora
from tests.server.helpers import Collector, batched_steps, counter_value, decode_steps, fp32_base, prompt_ids, reference


@pytest.fixture(scope="module")
def loras(tiny_model_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {
        "r4": make_lora(tiny_model_dir, root / "r4", rank=4, seed=1),
        "r8": make_lora(tiny_model_dir, root / "r8", rank=8, seed=2, modules=["q_proj", "v_proj", "down_proj"]),
    }


def test_mixed_batch_with_joins_and_leaves_equals_plain_peft(tiny_model_dir, loras):
    base = fp32_base(tiny_model_dir)
    tok = base.tokenizer
    cases = [
        ("Hello there", None, 12),
        ("Tell me about the sea", loras["r4"], 20),
        ("Three colours?", loras["r8"], 6),
        ("A longer question that makes this prompt longer than the others", loras["r4"], 16),
        ("Base again", None, 9),
    ]
    prompts = [prompt_ids(tok, text) for text, _, _ in cases]  # tokenized up front: the first two arrive together
    engine = Engine(base, max_batch_size=8, max_prefills_per_step=1)
    engine.start()
    try:
        collectors = []
        for i, ((_, adapter, max_tokens), ids) in enumerate(zip(cases, prompts)):
            c = Collector()
            handle = AdapterHandle(f"t/{adapter.name}@1", adapter) if adapter else None
            engine.submit(GenerationRequest(ids, SamplingParams(max_tokens, temperature=0), handle, c))
            collectors.append(c)
            time.sleep(0.02 * i)  # staggered: later rows join a batch already decoding
        results = [c.wait() for c in collectors]
    finally:
        engine.stop()
    assert decode_steps(engine.metrics) > 0
    # Continuous batching happened: some decode steps ran two rows or more at once.
    assert batched_steps(engine.metrics) >= 1, (decode_steps(engine.metrics), batched_steps(engine.metrics))
    for (text, adapter, max_tokens), ids, c, fin in zip(cases, prompts, collectors, results):
        expected = tok.decode(reference(tiny_model_dir, adapter, ids, max_tokens), skip_special_tokens=True)
        assert fin.reason == "length" and fin.completion_tokens == max_tokens
        assert c.text == expected, (text, adapter)


def test_adapter_changes_output(tiny_model_dir, loras):
    base = fp32_base(tiny_model_dir)
    ids = prompt_ids(base.tokenizer, "Hi")
    assert reference(tiny_model_dir, None, ids, 8) != reference(tiny_model_dir, loras["r4"], ids, 8)


@pytest.fixture(scope="module")
def nf4_engine(tiny_model_dir):
    # A budget below two small adapters: loading a second one evicts the first.
    engine = Engine(load_base(tiny_model_dir), max_batch_size=4, adapter_cache_bytes=40_000)
    engine.start()
    yield engine
    engine.stop()


def run(engine: Engine, text: str, params: SamplingParams, adapter: AdapterHandle | None = None) -> Collector:
    c = Collector()
    engine.submit(GenerationRequest(prompt_ids(engine.base.tokenizer, text), params, adapter, c))
    c.wait()
    return c


def test_nf4_greedy_is_deterministic_and_honours_max_tokens(nf4_engine):
    a = run(nf4_engine, "Hello", SamplingParams(10, temperature=0))
    b = run(nf4_engine, "Hello", SamplingParams(10, temperature=0))
    assert a.finished.reason == "length" and a.finished.completion_tokens == 10
    assert a.text == b.text and a.text


def test_seeded_sampling_reproduces_and_seeds_differ(nf4_engine):
    params = dict(max_tokens=12, temperature=1.0, top_p=0.9)
    a = run(nf4_engine, "Hello", SamplingParams(**params, seed=7))
    b = run(nf4_engine, "Hello", SamplingParams(**params, seed=7))
    c = run(nf4_engine, "Hello", SamplingParams(**params, seed=8))
    assert a.text == b.text
    assert a.text != c.text


def test_stop_string_ends_generation_and_is_not_included(nf4_engine):
    # The random tiny model is greedy-whitespace; a seeded sample gives varied, repeatable text.
    sampled = dict(max_tokens=16, temperature=1.0, seed=3)
    full = run(nf4_engine, "Hello", SamplingParams(**sampled)).text
    starts = [i for i in range(1, len(full) - 1) if len(full[i : i + 2].strip()) == 2]
    assert starts, full
    stop = full[starts[len(starts) // 2] : starts[len(starts) // 2] + 2]
    cut = run(nf4_engine, "Hello", SamplingParams(**sampled, stop=(stop,)))
    assert cut.finished.reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_cancel_stops_the_row_at_the_next_step(nf4_engine):
    c = Collector()
    handle = nf4_engine.submit(
        GenerationRequest(prompt_ids(nf4_engine.base.tokenizer, "Hi"), SamplingParams(400, temperature=0), None, c)
    )
    c.wait_started()
    handle.cancel()
    fin = c.wait()
    assert fin.reason == "cancelled"
    assert fin.completion_tokens < 400


def test_adapter_cache_evicts_lru_and_reports_bad_files(nf4_engine, loras, tmp_path):
    first = run(nf4_engine, "Hi", SamplingParams(6, temperature=0), AdapterHandle("t/a@1", loras["r4"]))
    second = run(nf4_engine, "Hi", SamplingParams(6, temperature=0), AdapterHandle("t/b@1", loras["r8"]))
    assert first.finished.reason == second.finished.reason == "length"
    assert nf4_engine.adapters.loaded_keys == ["t/b@1"]  # over budget: "t/a@1" was evicted
    assert counter_value(nf4_engine.metrics, "swaplora_adapter_cache_evictions_total") >= 1
    (tmp_path / "adapter_config.json").write_text("{}")
    broken = run(nf4_engine, "Hi", SamplingParams(6, temperature=0), AdapterHandle("t/broken@1", tmp_path))
    assert broken.finished.reason == "error" and "t/broken@1" in broken.finished.error
    again = run(nf4_engine, "Hi", SamplingParams(6, temperature=0))
    assert again.finished.reason == "length"  # the engine survived


def test_an_adapter_that_cannot_load_fails_its_request_with_a_reference_only(nf4_engine, tmp_path):
    missing = AdapterHandle("acme/gone@1", tmp_path / "secret-location")
    c = run(nf4_engine, "Hello", SamplingParams(4, temperature=0), missing)
    assert c.finished.reason == "error" and "acme/gone@1 could not be loaded (error " in c.finished.error
    assert "secret-location" not in c.finished.error
    assert run(nf4_engine, "Hello", SamplingParams(4, temperature=0)).finished.reason == "length"  # still serving
