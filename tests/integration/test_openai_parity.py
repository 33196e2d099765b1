"""Issue 14's OpenAI parity against the live server, through the official ``openai`` client.

Sampling parameters (penalties, ``logit_bias``, ``min_tokens``, ``n``, ``logprobs``), structured
output (``response_format`` json_object / json_schema, ``chat.completions.parse``), tools, the
accepted-and-ignored parameters, ``/v1/completions`` and the prefix cache. Greedy decoding makes
most checks exact; the JSON run samples (temperature 0.7, a seed per request) and must parse
every time.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel, Field

from tests.integration.conftest import Server, auth, greedy, metric, metrics
from tests.integration.helpers import refused

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


# --------------------------------------------------------------------------------- sampling


def test_logit_bias_forces_and_forbids_tokens(acme: openai.OpenAI, tokenizer: Any, base_answer) -> None:
    (yes,) = tokenizer.encode("yes")
    forced = greedy(acme, "base", max_tokens=5, logit_bias={str(yes): 100})
    assert forced.choices[0].message.content == "yes" * 5
    first = base_answer.choices[0].message.content.split()[0]
    banned = greedy(acme, "base", max_tokens=3, logit_bias={str(tokenizer.encode(first)[0]): -100})
    assert not banned.choices[0].message.content.startswith(first)


def test_logit_bias_outside_the_vocabulary_is_a_400(acme: openai.OpenAI, tokenizer: Any) -> None:
    for token in (len(tokenizer), 10**8):
        error = refused(lambda t=token: greedy(acme, "base", max_tokens=1, logit_bias={str(t): 1}), "logit_bias")
        assert str(token) in error.message


def test_penalties_change_the_greedy_reply(acme: openai.OpenAI) -> None:
    def poem(**extra: Any) -> str:
        text = greedy(acme, "base", "Write a short poem about the sea.", max_tokens=16, **extra).choices[0].message
        return text.content

    plain = poem()
    assert poem(frequency_penalty=2.0) != plain
    assert poem(presence_penalty=2.0) != plain
    assert poem(extra_body={"repetition_penalty": 1.8}) != plain
    # a negative penalty rewards repeating; the exact formula is checked in tests/server/test_engine_rules.py
    assert poem(frequency_penalty=-2.0) != plain


def test_min_tokens_holds_back_the_end(acme: openai.OpenAI) -> None:
    prompt = "Reply with the single word yes."
    short = greedy(acme, "base", prompt, max_tokens=30)
    assert short.choices[0].finish_reason == "stop"
    floor = short.usage.completion_tokens + 4
    longer = greedy(acme, "base", prompt, max_tokens=30, extra_body={"min_tokens": floor})
    assert longer.usage.completion_tokens >= floor


def test_n_choices_share_one_prompt(acme: openai.OpenAI) -> None:
    joke = [{"role": "user", "content": "Tell me a joke."}]
    completion = acme.chat.completions.create(
        model="base", messages=joke, temperature=1, seed=11, n=3, max_tokens=6, logprobs=True
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len({c.message.content for c in completion.choices}) >= 2
    # Every token has its logprob, but an end-of-sequence token counts without being text.
    reported = sum(len(c.logprobs.content) for c in completion.choices)
    stopped = sum(c.finish_reason == "stop" for c in completion.choices)
    assert reported <= completion.usage.completion_tokens <= reported + stopped
    refused(lambda: greedy(acme, "base", max_tokens=1, n=5), "n")


def _check_logprobs(content: list[Any], text: str, top: int) -> None:
    """Each entry is well formed, greedy picked its top alternative, and the bytes are the text."""
    assert content
    for entry in content:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace")
        alternatives = [t.logprob for t in entry.top_logprobs]
        assert len(alternatives) == top and alternatives == sorted(alternatives, reverse=True)
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == entry.logprob
    assert b"".join(bytes(e.bytes) for e in content).decode() == text


def test_logprobs_whole_and_streamed(acme: openai.OpenAI) -> None:
    whole = greedy(acme, "base", logprobs=True, top_logprobs=3)
    choice = whole.choices[0]
    _check_logprobs(choice.logprobs.content, choice.message.content, 3)
    assert len(choice.logprobs.content) == whole.usage.completion_tokens - (choice.finish_reason == "stop")
    chunks = list(greedy(acme, "base", logprobs=True, top_logprobs=3, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    _check_logprobs(streamed, text, 3)
    assert [e.token for e in streamed] == [e.token for e in choice.logprobs.content]


# --------------------------------------------------------------------------------- structured output


class Bike(BaseModel):
    """Every field bounded, so a sampled reply always ends well within its max_tokens."""

    name: str = Field(max_length=24)
    kind: Literal["city", "mountain", "road", "cargo"]
    price_eur: int = Field(ge=0, le=9999)
    electric: bool


BIKE = "Invent a bike for a rental shop. Reply in JSON: name, kind, price_eur, electric."
RUNS = 100


def test_one_hundred_sampled_schema_replies_all_validate(
    acme: openai.OpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14's bar: 100 sampled requests (temperature 0.7, a seed each), 0 invalid; half through
    openai's ``parse`` helper with the pydantic model, half with the same schema as a raw dict."""
    raw_schema = type_to_response_format_param(Bike)
    assert raw_schema["json_schema"]["strict"] is True

    def one(i: int) -> str:
        """'' when request ``i`` gave a valid Bike, else what went wrong."""
        asked: dict[str, Any] = {"messages": [{"role": "user", "content": BIKE}], "seed": i, "max_tokens": 200}
        try:
            if i % 2:
                choice = acme.chat.completions.create(
                    model="base", temperature=0.7, response_format=raw_schema, **asked
                )
            else:
                choice = acme.chat.completions.parse(model="base", temperature=0.7, response_format=Bike, **asked)
                assert isinstance(choice.choices[0].message.parsed, Bike)
            reply = choice.choices[0]
            Bike.model_validate(json.loads(reply.message.content or ""))
            assert reply.finish_reason == "stop", reply
            return ""
        except Exception as exc:  # every failure is counted, none stops the run
            return f"request {i}: {exc!r}"[:400]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:  # the default batch: about 15 % sooner than 8 at a time
        invalid = [error for error in pool.map(one, range(RUNS)) if error]
    with capsys.disabled():
        print(f"\n{RUNS} sampled json_schema replies in {time.monotonic() - started:.1f} s, {len(invalid)} invalid")
    assert not invalid, invalid


def test_json_object_replies_parse(acme: openai.OpenAI) -> None:
    """json_object bounds nothing (sampled, this base often nests until max_tokens): a brief answer."""
    ask = "What is the capital of France? Answer in JSON with the keys name and country."
    for stream in (False, True):
        reply = greedy(acme, "base", ask, max_tokens=60, response_format={"type": "json_object"}, stream=stream)
        if stream:
            chunks = [c.choices[0] for c in reply if c.choices]
            text, reason = "".join(c.delta.content or "" for c in chunks), chunks[-1].finish_reason
        else:
            text, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert reason == "stop" and isinstance(json.loads(text), dict), (reason, text)


def test_unsupported_schema_features_are_named(acme: openai.OpenAI) -> None:
    for schema, feature in (
        ({"type": "string", "pattern": "(?=a)b"}, "look"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ):
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
        error = refused(lambda f=fmt: greedy(acme, "base", max_tokens=1, response_format=f), "response_format")
        assert error.code == "unsupported_schema" and feature in error.message, error.body


# --------------------------------------------------------------------------------- tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}


class GetTime(BaseModel):
    """The local time in a city."""

    city: str = Field(max_length=30)


ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_required_tool_choice_answers_with_a_tool_call(acme: openai.OpenAI) -> None:
    tools = [WEATHER, openai.pydantic_function_tool(GetTime)]
    completion = greedy(acme, "base", ASK[0]["content"], max_tokens=60, tools=tools, tool_choice="required")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    arguments = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("c", "f")
    else:
        assert call.function.name == "GetTime" and GetTime.model_validate(arguments)
    # The next turn: the call and its result in the history, answered in text.
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21, "sky": "sunny"}'},
    ]
    follow_up = acme.chat.completions.create(
        model="base", messages=history, tools=tools, tool_choice="none", temperature=0, max_tokens=8
    )
    assert follow_up.choices[0].message.content and not follow_up.choices[0].message.tool_calls
    no_tools = acme.chat.completions.create(model="base", messages=history, temperature=0, max_tokens=8)
    assert no_tools.choices[0].message.content


def test_named_tool_streams_one_call_at_the_end(acme: openai.OpenAI) -> None:
    with acme.chat.completions.stream(
        model="base",
        messages=ASK,
        tools=[WEATHER, openai.pydantic_function_tool(GetTime)],
        tool_choice={"type": "function", "function": {"name": "GetTime"}},
        temperature=0,
        max_tokens=40,
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    deltas = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and deltas[0].finish_reason == "tool_calls"
    assert [(t.index, t.function.name) for t in deltas[0].delta.tool_calls] == [(0, "GetTime")]
    (call,) = final.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, GetTime)  # openai's helper parsed it
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_choice_auto_is_refused_on_this_base(acme: openai.OpenAI) -> None:
    for extra in ({}, {"tool_choice": "auto"}):
        call = lambda e=extra: greedy(acme, "base", max_tokens=1, tools=[WEATHER], **e)  # noqa: E731
        assert "tool_choice" in refused(call, "tool_choice", "tool_choice_unsupported").message


# --------------------------------------------------------------------------------- parameters


IGNORED = dict(store=True, metadata={"page": "faq"}, parallel_tool_calls=False, service_tier="auto", user="u1")
IGNORED |= dict(prediction={"type": "content", "content": "Paris"}, prompt_cache_key="faq", safety_identifier="u1")


def test_ignored_parameters_change_nothing(acme: openai.OpenAI, base_answer) -> None:
    completion = greedy(acme, "base", **IGNORED)
    assert completion.choices[0].message.content == base_answer.choices[0].message.content


def test_an_unknown_parameter_is_named(acme: openai.OpenAI) -> None:
    call = lambda: greedy(acme, "base", max_tokens=1, extra_body={"web_search_options": {}})  # noqa: E731
    assert "web_search_options" in refused(call, "web_search_options").message


def test_a_publishable_key_gets_one_choice(server: Server, http: httpx.Client) -> None:
    created = http.post("/v1/tenants", json={"id": "parity-widget"}, headers=auth(server.admin_key))
    secret = created.json()["api_key"]
    site = "https://shop.example"
    assert http.patch("/v1/tenants/parity-widget", json={"allowed_origins": [site]}, headers=auth(secret)).is_success
    key = http.post("/v1/tenants/parity-widget/keys", json={"kind": "publishable"}, headers=auth(secret)).json()
    body = {"model": "base", "messages": ASK, "max_tokens": 1, "n": 2}
    response = http.post("/v1/chat/completions", json=body, headers={**auth(key["api_key"]), "Origin": site})
    assert response.status_code == 403 and response.json()["error"]["param"] == "n", response.text


# --------------------------------------------------------------------------------- prefix cache


def test_a_repeated_system_prompt_is_served_from_the_prefix_cache(
    acme: openai.OpenAI, globex: openai.OpenAI, http: httpx.Client, support_v1
) -> None:
    rules = " ".join(f"Rule {i}: answer questions about bike {i} politely." for i in range(20))
    messages = [
        {"role": "system", "content": f"You are the assistant of shop {uuid.uuid4().hex}. {rules}"},
        {"role": "user", "content": "Do you rent bikes?"},
    ]

    def ask(client: openai.OpenAI, model: str = "base") -> Any:
        return client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=8)

    before = metric(metrics(http), "swaplora_prefix_cache_hit_tokens_total")
    first, second = ask(acme), ask(acme)
    assert first.usage.prompt_tokens >= 200
    # At most the chat template's first tokens, shared with earlier prompts (less than a block).
    assert first.usage.prompt_tokens_details.cached_tokens < 16
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 200 <= cached < second.usage.prompt_tokens
    assert metric(metrics(http), "swaplora_prefix_cache_hit_tokens_total") >= before + cached
    assert second.choices[0].message.content == first.choices[0].message.content
    other = ask(globex)  # another tenant's prefixes are its own
    assert other.usage.prompt_tokens_details.cached_tokens < 16
    assert other.choices[0].message.content == first.choices[0].message.content
    # LoRA changes k and v: an adapter never reuses the base's prefix, only its own.
    adapted = [ask(acme, "acme/support") for _ in range(2)]
    assert adapted[0].usage.prompt_tokens_details.cached_tokens < 16
    assert adapted[1].usage.prompt_tokens_details.cached_tokens == cached
    assert adapted[1].choices[0].message.content == adapted[0].choices[0].message.content
