"""Per-row sampling rules in the batched engine, each against an independent reference on a tiny
random Llama: logit_bias, frequency/presence/repetition penalties, min_tokens, n choices sharing a
prefill, logprobs (generated and prompt), and rows with different rules sharing one batch."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from server.engine.requests import GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.server.helpers import Collector, counter_value, fp32_base, prompt_ids, started_fp32_engine


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):
    engine = started_fp32_engine(tiny_model_dir, max_batch_size=8)
    yield engine
    engine.stop()


def submit(engine: Engine, ids: list[int], params: SamplingParams, n: int = 1) -> Collector:
    collector = Collector(n)
    engine.submit(GenerationRequest(ids, params, None, collector, n=n))
    return collector


def generated_ids(engine: Engine, collector: Collector, index: int = 0) -> list[int]:
    return [entry.token for entry in collector.logprobs[index]]


@torch.inference_mode()
def greedy_reference(engine: Engine, ids: list[int], steps: int, rule) -> list[int]:
    """Plain full forwards, one per token, with ``rule(logits, prompt, generated)`` applied: an
    independent implementation of the engine's logits processing."""
    model = engine.base.model
    out: list[int] = []
    for _ in range(steps):
        logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
        rule(logits, ids, out)
        out.append(int(logits.argmax()))
    return out


def run_both(engine, ids, params, rule):
    c = submit(engine, ids, dataclasses.replace(params, logprobs=0, ignore_eos=True))
    c.wait()
    return generated_ids(engine, c), greedy_reference(engine, ids, params.max_tokens, rule)


def test_logit_bias_forces_and_bans(engine):
    ids = prompt_ids(engine.base.tokenizer, "Say something")
    plain = submit(engine, ids, SamplingParams(6, temperature=0, logprobs=0, ignore_eos=True))
    plain.wait()
    first = generated_ids(engine, plain)[0]
    forced = submit(
        engine, ids, SamplingParams(6, temperature=0, logit_bias=((42, 100.0),), logprobs=0, ignore_eos=True)
    )
    forced.wait()
    assert generated_ids(engine, forced) == [42] * 6
    banned = submit(
        engine, ids, SamplingParams(6, temperature=0, logit_bias=((first, -100.0),), logprobs=0, ignore_eos=True)
    )
    banned.wait()
    assert first not in generated_ids(engine, banned)


def test_frequency_and_presence_penalties_match_the_formula(engine):
    ids = prompt_ids(engine.base.tokenizer, "Count with me")
    params = SamplingParams(16, temperature=0, frequency_penalty=1.5, presence_penalty=0.5)

    def rule(logits, prompt, out):
        for token in set(out):
            logits[token] -= 1.5 * out.count(token) + 0.5

    got, want = run_both(engine, ids, params, rule)
    assert got == want
    unpenalised, _ = run_both(engine, ids, SamplingParams(16, temperature=0), lambda *a: None)
    assert got != unpenalised  # the penalty changed something (a test that can fail)


def test_repetition_penalty_matches_the_formula(engine):
    ids = prompt_ids(engine.base.tokenizer, "Repeat repeat repeat")
    params = SamplingParams(16, temperature=0, repetition_penalty=1.8)

    def rule(logits, prompt, out):
        seen = torch.tensor(sorted(set(prompt) | set(out)))
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / 1.8, values * 1.8)

    got, want = run_both(engine, ids, params, rule)
    assert got == want


def test_min_tokens_masks_the_end(engine):
    eos = engine.base.tokenizer.eos_token_id
    ids = prompt_ids(engine.base.tokenizer, "Stop at once")
    quick = submit(engine, ids, SamplingParams(20, temperature=0, logit_bias=((eos, 100.0),)))
    assert quick.wait().reason == "stop" and quick.finished.completion_tokens == 1
    held = submit(engine, ids, SamplingParams(20, temperature=0, logit_bias=((eos, 100.0),), min_tokens=5))
    assert held.wait().reason == "stop" and held.finished.completion_tokens == 6  # 5 tokens, then the end


def test_n_choices_share_a_prefill_and_reproduce_single_seeded_requests(engine):
    ids = prompt_ids(engine.base.tokenizer, "Tell me a story")
    prefilled = counter_value(engine.metrics, "swaplora_prompt_tokens_total")
    many = submit(engine, ids, SamplingParams(12, temperature=1.0, seed=7, ignore_eos=True), n=3)
    many.wait()
    assert counter_value(engine.metrics, "swaplora_prompt_tokens_total") - prefilled == len(ids)  # one prefill
    assert sorted(many.ends) == [0, 1, 2] and all(e.completion_tokens == 12 for e in many.ends.values())
    assert len({many.texts[i] for i in range(3)}) == 3  # different seeds: different stories
    for i in range(3):  # choice i is what a single request seeded seed + i gets
        single = submit(engine, ids, SamplingParams(12, temperature=1.0, seed=7 + i, ignore_eos=True))
        single.wait()
        assert single.text == many.texts[i]


def test_logprobs_match_the_model_and_every_token_is_reported_once(engine):
    ids = prompt_ids(engine.base.tokenizer, "What is two plus two")
    c = submit(engine, ids, SamplingParams(8, temperature=0, logprobs=5, ignore_eos=True))
    c.wait()
    entries = c.logprobs[0]
    assert len(entries) == 8
    reference = greedy_reference(engine, ids, 8, lambda *a: None)
    assert [e.token for e in entries] == reference
    with torch.inference_mode():
        logits = engine.base.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits, dim=-1)
    first = entries[0]
    assert math.isclose(first.logprob, float(expected[first.token]), abs_tol=1e-4)
    assert len(first.top) == 5 and first.top[0][0] == first.token  # greedy: the best is the chosen
    assert [lp for _, lp in first.top] == sorted((lp for _, lp in first.top), reverse=True)


def test_prompt_logprobs_score_the_prompt(engine):
    ids = prompt_ids(engine.base.tokenizer, "Score this prompt please")
    c = submit(engine, ids, SamplingParams(0, temperature=0, prompt_logprobs=2))
    end = c.wait()
    assert end.reason == "length" and end.completion_tokens == 0
    scored = end.prompt_logprobs
    assert [e.token for e in scored] == ids and math.isnan(scored[0].logprob)
    with torch.inference_mode():
        logp = torch.log_softmax(engine.base.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    for position, entry in enumerate(scored[1:]):
        assert math.isclose(entry.logprob, float(logp[position, ids[position + 1]]), abs_tol=1e-4)
        assert len(entry.top) == 2


def test_rows_with_different_rules_share_a_batch_without_changing_each_other(engine):
    ids = prompt_ids(engine.base.tokenizer, "Hello again")
    alone = submit(engine, ids, SamplingParams(12, temperature=0, ignore_eos=True))
    alone.wait()
    mixed = [
        submit(engine, ids, SamplingParams(12, temperature=0, ignore_eos=True)),
        submit(engine, ids, SamplingParams(12, temperature=0, frequency_penalty=2.0, ignore_eos=True)),
        submit(engine, ids, SamplingParams(12, temperature=0, logit_bias=((42, 100.0),), ignore_eos=True)),
    ]
    for c in mixed:
        c.wait()
    assert mixed[0].text == alone.text
    assert mixed[2].text == engine.base.tokenizer.decode([42] * 12)


def test_prefix_cache_reuses_blocks_and_greedy_output_is_unchanged(tiny_model_dir: Path):
    base = fp32_base(tiny_model_dir)
    tok = base.tokenizer
    system = "You answer questions about the Acme handbook. " * 12
    turns = [
        [{"role": "system", "content": system}, {"role": "user", "content": "When do you open?"}],
        [
            {"role": "system", "content": system},
            {"role": "user", "content": "When do you open?"},
            {"role": "assistant", "content": "At nine."},
            {"role": "user", "content": "And on Sundays?"},
        ],
    ]
    prompts = [tok(tok.apply_chat_template(t, add_generation_prompt=True, tokenize=False)).input_ids for t in turns]
    outputs = {}
    for budget in (0, 64 << 20):
        engine = Engine(fp32_base(tiny_model_dir), max_batch_size=4, prefix_cache_bytes=budget, prefix_block_tokens=16)
        engine.start()
        try:
            runs = []
            for ids in prompts + prompts:  # each prompt twice: the second time it is all cached
                c = submit(engine, ids, SamplingParams(10, temperature=0, ignore_eos=True))
                c.wait()
                runs.append((c.text, c.finished.cached_tokens))
            outputs[budget] = runs
            hit = counter_value(engine.metrics, "swaplora_prefix_cache_hit_tokens_total")
        finally:
            engine.stop()
        if budget:
            assert hit > 0
    assert [text for text, _ in outputs[0]] == [text for text, _ in outputs[64 << 20]]
    cached = [tokens for _, tokens in outputs[64 << 20]]
    assert cached[0] == 0 and cached[1] >= len(prompts[0]) - 16  # turn 2 reuses turn 1's blocks
    assert cached[2] == len(prompts[0]) - 1  # a repeat reuses every position but the last token's
    assert all(tokens == 0 for _, tokens in outputs[0])
