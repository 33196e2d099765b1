"""Every row is served with its own adapter, whatever the engine's caches hold: the canary scenario
of tests/integration/test_tenancy_http.py on a tiny fp32 Llama, where batching is exact.

Two tenants' adapters (same rank and modules, so only the weights tell them apart), a base request
with the first tenant's salt and the same prompt, and a third adapter of another rank and module set
(the slot stack widens its layout) run through an engine whose adapter cache holds about one adapter
on the device and one on the host (every switch evicts, some come back from the host, some from
disk) and whose prefix cache keeps small blocks (later requests continue from cached blocks). First
sequentially, as the integration fixture does, then interleaved and concurrent so rows of every
adapter and base share decode steps, joining and leaving. Each answer must be the token ids the
same request gets alone on a fresh engine with no prefix cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.engine.adapter_cache import AdapterHandle
from server.engine.lora_stack import load_lora
from server.engine.requests import GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.conftest import make_lora
from tests.server.helpers import Collector, counter_value, fp32_base, prompt_ids

TOKENS = 4
PROMPTS = ("What is the capital of France?", "Name a colour.")


@pytest.fixture(scope="module")
def handles(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, AdapterHandle | None]:
    root = tmp_path_factory.mktemp("isolation-loras")
    return {
        None: None,
        "a": AdapterHandle("canary-a/bot@1", make_lora(tiny_model_dir, root / "a", rank=4, seed=21)),
        "b": AdapterHandle("canary-b/bot@1", make_lora(tiny_model_dir, root / "b", rank=4, seed=22)),
        "c": AdapterHandle(
            "other/qv@1", make_lora(tiny_model_dir, root / "c", rank=8, seed=23, modules=["q_proj", "v_proj"])
        ),
    }


def _submit(engine: Engine, ids: list[int], handle: AdapterHandle | None, salt: str) -> Collector:
    collector = Collector()
    params = SamplingParams(TOKENS, temperature=0, logprobs=0, ignore_eos=True)
    engine.submit(GenerationRequest(ids, params, handle, collector, cache_salt=salt))
    return collector


def _tokens(collector: Collector) -> list[int]:
    end = collector.wait()
    assert end.reason == "length", end
    return [entry.token for entry in collector.logprobs[0]]


SALT = {None: "canary-a", "a": "canary-a", "b": "canary-b", "c": "other"}
"""Each request's tenant salt: the base request shares the first tenant's, as in the fixture."""


def test_rows_keep_their_adapter_through_evictions_prefix_hits_and_mixed_batches(
    tiny_model_dir: Path, handles: dict[str | None, AdapterHandle | None]
) -> None:
    tokenizer = fp32_base(tiny_model_dir).tokenizer
    prompts = [prompt_ids(tokenizer, text) for text in PROMPTS]

    alone = Engine(fp32_base(tiny_model_dir), max_batch_size=1)
    alone.start()
    try:
        expected = {
            (name, i): _tokens(_submit(alone, ids, h, SALT[name]))
            for name, h in handles.items()
            for i, ids in enumerate(prompts)
        }
    finally:
        alone.stop()
    for i in range(len(prompts)):
        assert len({tuple(expected[name, i]) for name in handles}) == len(handles), "the adapters must tell apart"

    size = {name: load_lora(h.path, torch.float32, torch.device("cpu")).nbytes for name, h in handles.items() if h}
    assert size["a"] == size["b"] > size["c"]
    engine = Engine(
        fp32_base(tiny_model_dir),
        max_batch_size=8,
        adapter_cache_bytes=size["a"],  # one adapter (pins may exceed it): each switch evicts
        adapter_host_cache_bytes=size["a"] + size["c"],  # a and b never both: one is dropped, read again
        prefix_cache_bytes=1 << 20,
        prefix_block_tokens=8,
    )
    engine.start()
    try:
        got: list[tuple[tuple[str | None, int], Collector]] = []
        # As the integration fixture: a, base with a's salt, b; then c. The second prompt (no prefix
        # hit yet) comes back from the host (b, c) or from disk (a, dropped from the host).
        for i, ids in enumerate(prompts):
            for name in ("a", None, "b", "c"):
                got.append(((name, i), c := _submit(engine, ids, handles[name], SALT[name])))
                c.wait()
        # Then interleaved, all queued at once: every adapter (and base) with both prompts.
        order = [(("a", "b", None, "c")[k % 4], k // 4 % 2) for k in range(32)]
        got += [((name, i), _submit(engine, prompts[i], handles[name], SALT[name])) for name, i in order]
        answers = [(key, _tokens(c)) for key, c in got]
        metrics = engine.metrics
        # What the test is about happened: prefix hits, evictions, returns from the host and from disk.
        assert counter_value(metrics, "swaplora_prefix_cache_hit_tokens_total") > 0
        assert counter_value(metrics, "swaplora_adapter_cache_evictions_total") > 0
        assert counter_value(metrics, "swaplora_adapter_cache_host_hits_total") > 0
        assert counter_value(metrics, "swaplora_adapter_cache_misses_total") > 3
    finally:
        engine.stop()
    wrong = [(key, tokens) for key, tokens in answers if tokens != expected[key]]
    assert wrong == [], f"{len(wrong)} of {len(answers)} answers not their adapter's: {wrong[:4]}"
