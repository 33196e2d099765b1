"""Strict request validation: every refusal names the parameter, nothing is silently ignored."""

from __future__ import annotations

import json

import pytest

from server.api.chat_request import ChatCompletionRequest
from server.api.completion_request import CompletionRequest
from server.errors import APIError
from server.schemas import parse_json

OK = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


def refused(body: dict | bytes) -> APIError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(APIError) as info:
        parse_json(ChatCompletionRequest, raw)
    assert info.value.status == 400
    return info.value


def test_accepts_the_openai_shape() -> None:
    body = {
        **OK,
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0,
        "top_p": 0.5,
        "max_completion_tokens": 5,
        "stop": ["\n"],
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
    }
    parsed = parse_json(ChatCompletionRequest, json.dumps(body).encode())
    assert parsed.messages[0].text() == "be brief"
    assert parsed.stop_strings() == ("\n",) and parsed.requested_max_tokens() == 5


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"tools": []}, "tools"),
        ({"logit_bias": {"a": 2}}, "logit_bias"),
        ({"logit_bias": {"1": 101}}, "logit_bias"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools.0.function.name"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages.0.tool_calls"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages.0.content"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages.0.content"),
        ({"model": 3}, "model"),
    ],
)
def test_refuses_with_the_parameter_named(change: dict, param: str) -> None:
    error = refused({**OK, **change})
    assert error.param is not None and error.param.startswith(param), error.message


def test_missing_and_malformed_bodies() -> None:
    assert refused({"messages": OK["messages"]}).param == "model"
    assert "not valid JSON" in refused(b'{"model": ').message
    assert "empty" in refused(b"  ").message
    assert "JSON object" in refused(b"[1, 2]").message
    image = {**OK, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
    assert ".str" not in refused(image).param
    assert refused({**OK, "seed": 2**70}).param == "seed"


def test_accepts_tools_history_and_the_ignored_parameters() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {
        **OK,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "frequency_penalty": 0.5,
        "logit_bias": {"42": -100},
        "store": False,
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "service_tier": "auto",
        "prediction": {"type": "content", "content": "x"},
        "prompt_cache_key": "k",
        "safety_identifier": "s",
    }
    parsed = parse_json(ChatCompletionRequest, json.dumps(body).encode())
    assert parsed.calls_tool == "f" and parsed.logprobs_count == 2


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [""]}, "prompt"),
        ({"prompt": ["a"] * 17}, "prompt"),
        ({"logprobs": 21}, "logprobs"),
        ({"prompt": [1, "a"]}, "prompt"),
    ],
)
def test_completions_refuse_with_the_parameter_named(change: dict, param: str) -> None:
    with pytest.raises(APIError) as info:
        parse_json(CompletionRequest, json.dumps({"model": "base", "prompt": "Hi", **change}).encode())
    assert info.value.param is not None and info.value.param.startswith(param), info.value.message
    assert parse_json(CompletionRequest, b'{"model": "base", "prompt": [[1, 2], [3]], "echo": true, "max_tokens": 0}')
