"""Tools in the prompt and in the reply: a template without tool support gets the tools described
in its system turn, earlier calls as JSON and results as user turns; a template with tool support
gets them structured; a reply's calls come back in OpenAI's shape (forced JSON, or <tool_call>
blocks in auto mode)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from adapters.base_model import load_tokenizer
from server.api.chat_reply import ChatReply
from server.api.chat_request import ChatMessage
from server.engine.requests import Finished
from server.prompt import ToolsInPrompt, render_prompt
from server.tool_calls import template_supports_tools, tools_prompt

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HISTORY = [
    ChatMessage(role="user", content="Weather in Paris?"),
    ChatMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
    ),
    ChatMessage(role="tool", content="18 C, sunny", tool_call_id="call_1"),
]
# A Hermes/Qwen-style template: tools in the system turn, calls in <tool_call> blocks.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t['function']['name'] }} {% endfor %}<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
    "{% for c in m.get('tool_calls', []) %}<tool_call>{{ c['function'] | tojson }}</tool_call>{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path):
    return load_tokenizer(embedded_model_dir)


def test_a_template_without_tools_gets_them_described(tokenizer) -> None:
    assert not template_supports_tools(tokenizer)
    instruction = tools_prompt([WEATHER], None)
    ids = render_prompt(tokenizer, HISTORY, "You are Acme's assistant.", ToolsInPrompt([WEATHER], False, instruction))
    text = tokenizer.decode(ids)
    system = text.split("<|im_end|>")[0]
    assert "You are Acme's assistant." in system and "get_weather" in system  # one system turn, both in it
    assert '"name": "get_weather"' in text and "Paris" in text  # the earlier call, as the JSON asked for
    assert "<|im_start|>user\nResult of tool call call_1: 18 C, sunny" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_a_template_with_tools_gets_them_structured(tokenizer) -> None:
    native = copy.deepcopy(tokenizer)
    native.chat_template = TOOL_TEMPLATE
    assert template_supports_tools(native)
    text = native.decode(render_prompt(native, HISTORY, None, ToolsInPrompt([WEATHER], True)))
    assert text.startswith("<|im_start|>system\nTools: get_weather")
    call = json.loads(text.split("<tool_call>")[1].split("</tool_call>")[0])
    assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}  # arguments as an object
    assert "<|im_start|>tool\n18 C, sunny" in text


def end(reason: str = "stop") -> Finished:
    return Finished(reason, 10, 5)


def test_reply_shapes_for_forced_and_auto_calls() -> None:
    forced = ChatReply(0, "base", lambda t: b"x", "forced", False)
    message, reason = forced.message('{"name": "get_weather", "arguments": {"city": "Oslo"}}', end())
    assert reason == "tool_calls" and message["content"] is None
    call = message["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    cut, reason = forced.message('{"name": "get_weather", "argu', end("length"))
    assert reason == "length" and cut["content"].startswith("{") and "tool_calls" not in cut
    auto = ChatReply(0, "base", lambda t: b"x", "auto", False)
    text = 'Let me check.<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'
    message, reason = auto.message(text, end())
    assert reason == "tool_calls" and message["content"] == "Let me check."
    plain, reason = auto.message("It is sunny.", end())
    assert reason == "stop" and plain["content"] == "It is sunny." and "tool_calls" not in plain
