"""Constrained rows (a JSON schema) and free rows share the engine's batch: every constrained
reply parses and validates, ends as soon as the JSON is complete, and the free rows produce
exactly what they produce alone. A tiny random Llama writes the tokens, so only the grammar can
make its output valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.engine.grammar import GrammarCompiler
from server.engine.requests import GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from tests.server.helpers import Collector, prompt_ids, started_fp32_engine

SCHEMA = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "size": {"type": "integer", "minimum": 0, "maximum": 99},
        "ok": {"type": "boolean"},
    },
    "required": ["colour", "size", "ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):
    engine = started_fp32_engine(tiny_model_dir, max_batch_size=8)
    yield engine
    engine.stop()


def test_constrained_and_free_rows_share_a_batch(engine: Engine) -> None:
    grammar = GrammarCompiler(engine.base.tokenizer, engine.base.eos_token_ids).json_schema(SCHEMA)
    ids = prompt_ids(engine.base.tokenizer, "Describe the ball as JSON")
    free = SamplingParams(40, temperature=0, ignore_eos=True)
    alone = Collector()
    engine.submit(GenerationRequest(ids, free, None, alone))
    alone.wait()
    collectors = []
    for seed in range(4):
        c = Collector(2)
        params = SamplingParams(300, temperature=1.0, seed=seed)
        engine.submit(GenerationRequest(ids, params, None, c, n=2, constraint=grammar.matcher))
        collectors.append(c)
        mixed_free = Collector()
        engine.submit(GenerationRequest(ids, free, None, mixed_free))
        collectors.append(mixed_free)
    for c in collectors:
        c.wait()
    for c in collectors[0::2]:
        for index in (0, 1):
            value = json.loads(c.texts[index])
            assert set(value) == {"colour", "size", "ok"} and value["colour"] in SCHEMA["properties"]["colour"]["enum"]
            assert 0 <= value["size"] <= 99 and isinstance(value["ok"], bool)
            assert c.ends[index].reason == "stop"
    for c in collectors[1::2]:
        assert c.text == alone.text  # the grammar rows changed nothing for the free rows


def test_a_grammar_is_followed_under_greedy_decoding_too(engine: Engine) -> None:
    grammar = GrammarCompiler(engine.base.tokenizer, engine.base.eos_token_ids).json_object()
    ids = prompt_ids(engine.base.tokenizer, "Any JSON object")
    c = Collector()
    engine.submit(GenerationRequest(ids, SamplingParams(400, temperature=0), None, c, constraint=grammar.matcher))
    end = c.wait()
    if end.reason == "stop":
        assert isinstance(json.loads(c.text), dict)
    else:  # a random model may keep a string open until max_tokens; what it wrote still starts an object
        assert end.reason == "length" and c.text.lstrip().startswith("{")
