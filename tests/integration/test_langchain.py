"""LangChain's ``ChatOpenAI`` against the live server, as an agent framework's user would set it up.

Issue 14 began with LangChain refused for ``frequency_penalty``, ``response_format`` and
``logprobs``; here invoke/stream/ainvoke with penalties, ``with_structured_output`` in each of its
methods and ``bind_tools`` run end to end. Every request body LangChain sends is recorded, so
each test also shows what reached the server. Nothing may reach the internet: LangSmith tracing
is off and nothing counts tokens with tiktoken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.integration.conftest import PROMPT, Server

pytestmark = pytest.mark.integration

PENALTIES = {"frequency_penalty": 0.5, "presence_penalty": 0.5}


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(max_length=30)
    country: str = Field(max_length=30)


class GetTime(BaseModel):
    """The local time in a city."""

    city: str = Field(max_length=30)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


ASK_CITY = "What is the capital of France? Answer in JSON with the keys name and country."
ASK_WEATHER = "What is the weather in Paris?"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.setenv(name, "false")


@pytest.fixture
def sent() -> list[dict[str, Any]]:
    """The bodies of the requests LangChain sent during the test."""
    return []


@pytest.fixture
def chat(
    server: Server, tenant_keys: dict[str, str], sent: list[dict[str, Any]]
) -> Iterator[Callable[..., ChatOpenAI]]:
    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append(json.loads(request.read()))

    client = httpx.Client(event_hooks={"request": [record]})

    def make(**settings: Any) -> ChatOpenAI:
        options = {"temperature": 0, "max_tokens": 12, **settings}
        return ChatOpenAI(
            base_url=server.api_url,
            api_key=tenant_keys["acme"],
            model="base",
            max_retries=0,
            timeout=300,
            http_client=client,
            **options,
        )

    try:
        yield make
    finally:
        client.close()


def test_invoke_stream_and_ainvoke_with_penalties_agree(
    chat: Callable[..., ChatOpenAI], sent: list[dict[str, Any]]
) -> None:
    llm = chat(**PENALTIES)
    message = llm.invoke(PROMPT)
    assert isinstance(message, AIMessage) and message.content
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    assert message.usage_metadata and message.usage_metadata["input_tokens"] > 0
    assert sent[-1]["frequency_penalty"] == 0.5 and sent[-1]["presence_penalty"] == 0.5
    streamed = "".join(str(chunk.content) for chunk in llm.stream(PROMPT))
    assert streamed == message.content and sent[-1]["stream"] is True

    async def ainvoke() -> Any:
        async def record(request: httpx.Request) -> None:
            sent.append(json.loads(request.read()))

        async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
            return await chat(http_async_client=client, **PENALTIES).ainvoke(PROMPT)

    assert asyncio.run(ainvoke()).content == message.content
    assert sent[-1]["frequency_penalty"] == 0.5 and not sent[-1].get("stream")


@pytest.mark.parametrize("method", [None, "json_schema", "function_calling"])
def test_structured_output_returns_the_pydantic_model(
    chat: Callable[..., ChatOpenAI], sent: list[dict[str, Any]], method: str | None
) -> None:
    llm = chat(max_tokens=60, **PENALTIES)
    structured = llm.with_structured_output(City) if method is None else llm.with_structured_output(City, method=method)
    city = structured.invoke(ASK_CITY)
    assert isinstance(city, City) and city.name and city.country
    body = sent[-1]
    if method == "function_calling":  # a named tool, the call's arguments are the model
        assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}
    else:  # the default is json_schema, strict
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True


def test_structured_output_json_mode_sends_json_object(
    chat: Callable[..., ChatOpenAI], sent: list[dict[str, Any]]
) -> None:
    """json_mode sends ``{"type": "json_object"}`` and no schema: the reply is always JSON, but only
    the prompt tells the model which keys to use, so only the JSON is checked here."""
    structured = chat(max_tokens=60).with_structured_output(City, method="json_mode", include_raw=True)
    result = structured.invoke(ASK_CITY)
    assert sent[-1]["response_format"] == {"type": "json_object"}
    assert isinstance(json.loads(result["raw"].content), dict)


def test_bind_tools_with_a_required_or_named_tool(chat: Callable[..., ChatOpenAI], sent: list[dict[str, Any]]) -> None:
    llm = chat(max_tokens=40)
    message = llm.bind_tools([get_weather, GetTime], tool_choice="required").invoke(ASK_WEATHER)
    assert sent[-1]["tool_choice"] == "required"
    (call,) = message.tool_calls
    assert call["name"] in ("get_weather", "GetTime") and isinstance(call["args"].get("city"), str)
    assert call["id"] and message.response_metadata["finish_reason"] == "tool_calls"
    named = llm.bind_tools([get_weather, GetTime], tool_choice="GetTime").invoke(ASK_WEATHER)
    assert sent[-1]["tool_choice"] == {"type": "function", "function": {"name": "GetTime"}}
    assert [c["name"] for c in named.tool_calls] == ["GetTime"]
    assert GetTime.model_validate(named.tool_calls[0]["args"])


def test_bind_tools_without_tool_choice_is_refused(chat: Callable[..., ChatOpenAI]) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        chat(max_tokens=4).bind_tools([get_weather]).invoke(ASK_WEATHER)
    assert refused.value.code == "tool_choice_unsupported" and "tool_choice" in str(refused.value)
