"""Strict request validation: every refusal names the parameter, nothing is silently ignored."""

from __future__ import annotations

import json

import pytest

from server.errors import APIError
from server.schemas import ChatCompletionRequest, parse_json

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
        ({"n": 2}, "n"),
        ({"tools": []}, "tools"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
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
