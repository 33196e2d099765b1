"""Tool calls as text: describing tools to a model, and reading its calls back in OpenAI's shape.

Contract (pure functions, no starlette, no model):
- :func:`template_supports_tools`: whether the base's chat template renders ``tools`` itself.
- :func:`tools_prompt`: for a template that does not, the text added to the system message: the
  functions (name, description, parameters schema) and the one JSON object to reply with,
  ``{"name": ..., "arguments": {...}}`` (the form :meth:`server.engine.grammar.GrammarCompiler.tool_call`
  constrains a forced call to).
- :func:`parse_tool_call`: that JSON object as OpenAI's tool call (``arguments`` a compact JSON
  string, as OpenAI sends it); None when the text is not such an object.
- :func:`parse_tool_call_blocks`: free text with ``<tool_call>{...}</tool_call>`` blocks (the
  Hermes/Qwen convention of templates with tool support) split into the remaining content and the
  calls; a block that is not a well-formed call stays in the content, as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_TOOLS_WORD = re.compile(r"\btools\b")


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template (or one of its named templates) mentions ``tools``."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return any(isinstance(t, str) and _TOOLS_WORD.search(t) for t in template.values())
    return isinstance(template, str) and _TOOLS_WORD.search(template) is not None


def tools_prompt(tools: list[dict[str, Any]], name: str | None) -> str:
    """The system-message text describing ``tools`` (only the function ``name`` when given) and the
    reply expected: one JSON object calling one of them."""
    functions = [t.get("function", {}) for t in tools if isinstance(t, dict)]
    if name is not None:
        functions = [f for f in functions if f.get("name") == name]
    lines = ["You can call this function:" if len(functions) == 1 else "You can call these functions:"]
    for function in functions:
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        lines.append(f"- {function.get('name')}: {function.get('description') or '(no description)'}")
        lines.append(f"  Parameters (JSON schema): {json.dumps(parameters, ensure_ascii=False)}")
    target = json.dumps(name) if name is not None else '"<function name>"'
    lines.append(
        "To call a function, reply with exactly one JSON object and nothing else: "
        f'{{"name": {target}, "arguments": {{...}}}}, where "arguments" is a JSON object that matches '
        "the function's parameters schema."
    )
    return "\n".join(lines)


def parse_tool_call(text: str, call_id: str) -> dict[str, Any] | None:
    """``text`` (one JSON object ``{"name": ..., "arguments": {...}}``) as an OpenAI tool call
    ``{"id", "type": "function", "function": {"name", "arguments": "<JSON string>"}}``, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return _call(value, call_id)


def parse_tool_call_blocks(text: str, new_id: Callable[[], str]) -> tuple[str | None, list[dict[str, Any]]]:
    """The content left once the ``<tool_call>`` blocks are taken out of ``text`` (None when nothing
    but whitespace is left), and the calls those blocks hold, in order, each with an id from ``new_id``."""
    calls: list[dict[str, Any]] = []

    def take(match: re.Match[str]) -> str:
        try:
            call = _call(json.loads(match.group(1)), "")
        except ValueError:
            call = None
        if call is None:
            return match.group(0)
        call["id"] = new_id()
        calls.append(call)
        return ""

    rest = _BLOCK.sub(take, text)
    if not calls:
        return text, []
    rest = rest.strip()
    return (rest or None), calls


def _call(value: Any, call_id: str) -> dict[str, Any] | None:
    """A decoded ``{"name", "arguments"}`` object (``parameters`` also taken: Llama's spelling; the
    arguments may come as a JSON string) as an OpenAI tool call; None if it is not one."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    encoded = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}
