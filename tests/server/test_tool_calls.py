"""Tool calls as text (server.tool_calls): the prompt that describes tools, and reading calls back."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from types import SimpleNamespace

from server.tool_calls import parse_tool_call, parse_tool_call_blocks, template_supports_tools, tools_prompt

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NOW = {"type": "function", "function": {"name": "now"}}


def ids() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"call_{next(numbers)}"


def test_template_support_is_read_from_the_chat_template() -> None:
    assert template_supports_tools(SimpleNamespace(chat_template="{% if tools %}{{ tools | tojson }}{% endif %}"))
    assert template_supports_tools(SimpleNamespace(chat_template={"default": "x", "tool_use": "{{ tools }}"}))
    assert not template_supports_tools(SimpleNamespace(chat_template="{{ message['content'] }} toolset"))
    assert not template_supports_tools(SimpleNamespace(chat_template=None))
    assert not template_supports_tools(SimpleNamespace())


def test_tools_prompt_describes_every_function_and_the_reply() -> None:
    text = tools_prompt([WEATHER, NOW], None)
    assert "get_weather: The weather in a city." in text and "- now: (no description)" in text
    assert json.dumps(WEATHER["function"]["parameters"]) in text
    assert '{"type": "object", "properties": {}}' in text  # missing parameters: an empty object
    assert '{"name": "<function name>", "arguments": {...}}' in text and "exactly one JSON object" in text


def test_tools_prompt_for_a_named_function_shows_only_it() -> None:
    text = tools_prompt([WEATHER, NOW], "get_weather")
    assert "You can call this function:" in text and "now" not in text.replace("nothing", "")
    assert '{"name": "get_weather", "arguments": {...}}' in text


def test_a_forced_call_becomes_an_openai_tool_call_with_compact_arguments() -> None:
    call = parse_tool_call('{"name": "get_weather",\n "arguments": {"city": "Zürich", "days": [1, 2]}}', "call_x")
    assert call == {
        "id": "call_x",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Zürich","days":[1,2]}'},
    }
    assert json.loads(call["function"]["arguments"]) == {"city": "Zürich", "days": [1, 2]}


def test_text_that_is_not_a_call_is_none() -> None:
    for text in ('{"name": "f", "arguments"', "[1]", '{"arguments": {}}', '{"name": "", "arguments": {}}', "hi"):
        assert parse_tool_call(text, "call_x") is None
    assert parse_tool_call('{"name": "f", "arguments": [1]}', "call_x") is None
    # Llama's spelling and arguments sent as a JSON string are read too.
    assert parse_tool_call('{"name": "f", "parameters": {"a": 1}}', "c")["function"]["arguments"] == '{"a":1}'
    assert parse_tool_call('{"name": "f", "arguments": "{\\"a\\": 1}"}', "c")["function"]["arguments"] == '{"a":1}'
    assert parse_tool_call('{"name": "f"}', "c")["function"]["arguments"] == "{}"


def test_tool_call_blocks_are_taken_out_of_the_content() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
        '<tool_call>{"name": "now", "arguments": {}}</tool_call>'
    )
    content, calls = parse_tool_call_blocks(text, ids())
    assert content == "Let me check."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_1", "get_weather", '{"city":"Oslo"}'),
        ("call_2", "now", "{}"),
    ]


def test_only_calls_leave_no_content_and_broken_blocks_stay_text() -> None:
    content, calls = parse_tool_call_blocks('<tool_call>{"name": "now", "arguments": {}}</tool_call>\n', ids())
    assert content is None and len(calls) == 1
    broken = 'Sure <tool_call>{"name": "now", "arguments": </tool_call> and <tool_call>{"name"'
    assert parse_tool_call_blocks(broken, ids()) == (broken, [])
    assert parse_tool_call_blocks("plain text", ids()) == ("plain text", [])
    mixed = '<tool_call>not json</tool_call> then <tool_call>{"name": "now"}</tool_call>'
    content, calls = parse_tool_call_blocks(mixed, ids())
    assert content == "<tool_call>not json</tool_call> then" and calls[0]["function"]["name"] == "now"
