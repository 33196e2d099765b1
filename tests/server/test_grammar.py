"""Constrained decoding (server.engine.grammar) with the real tokenizer and real llguidance: random
walks over the allowed tokens always produce JSON that matches the schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from adapters.base_model import load_tokenizer
from server.engine.grammar import GrammarCompiler, GrammarError, RowMatcher, apply_bitmask, new_bitmask

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["admin", "user", "guest"]},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 8}, "zip": {"type": "integer", "maximum": 99999}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    },
    "required": ["name", "age", "role", "address"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"$ref": "#/$defs/unit"}},
            "required": ["city", "unit"],
            "additionalProperties": False,
            "$defs": {"unit": {"enum": ["C", "F"]}},
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "maximum": 999}, "b": {"type": "integer", "maximum": 999}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
NOW = {"type": "function", "function": {"name": "now"}}  # no parameters: an empty object


@pytest.fixture(scope="module")
def compiler(embedded_model_dir) -> GrammarCompiler:
    return GrammarCompiler(load_tokenizer(embedded_model_dir), eos_token_ids=[0])


def allowed_tokens(matcher: RowMatcher, vocab: int) -> torch.Tensor:
    """The token ids the matcher allows next (through fill_bitmask and apply_bitmask)."""
    bitmask = new_bitmask(1, vocab)
    matcher.fill_bitmask(bitmask, 0)
    logits = torch.zeros(1, vocab)
    apply_bitmask(logits, bitmask, [0])
    return torch.isfinite(logits[0]).nonzero().flatten()


def walk(
    compiler: GrammarCompiler,
    matcher: RowMatcher,
    generator: torch.Generator,
    prefer: torch.Tensor | None = None,
    cap: int = 300,
) -> str | None:
    """Sample uniformly among the allowed tokens until the grammar is finished or EOS is drawn;
    the decoded text, or None when ``cap`` steps did not finish it. ``prefer`` (a [vocab] bool
    tensor): 9 times in 10, draw among the allowed tokens it marks, when there are any."""
    tokens: list[int] = []
    for _ in range(cap):
        allowed = allowed_tokens(matcher, compiler.vocab_size)
        if prefer is not None and float(torch.rand(1, generator=generator)) < 0.9:
            preferred = allowed[prefer[allowed]]
            allowed = preferred if len(preferred) else allowed
        token = int(allowed[torch.randint(len(allowed), (1,), generator=generator)])
        assert matcher.accept(token), matcher.error
        if token in compiler.eos_token_ids:
            break
        tokens.append(token)
        if matcher.finished:
            break
    else:
        return None
    return b"".join(compiler.token_bytes(t) for t in tokens).decode()


def check(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> None:
    """A small JSON-schema check of the keywords these tests use (no jsonschema in the venv)."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return check(value, node, root)
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    if "type" in schema:
        assert isinstance(value, kinds[schema["type"]]) and not (schema["type"] == "integer" and value is True)
    assert value in schema.get("enum", [value])
    if isinstance(value, (int, float)):
        assert schema.get("minimum", value) <= value <= schema.get("maximum", value)
    if isinstance(value, (str, list)):
        assert len(value) <= schema.get("maxLength" if isinstance(value, str) else "maxItems", len(value))
    for item in value if isinstance(value, list) else []:
        check(item, schema["items"], root)
    if isinstance(value, dict):
        assert set(schema.get("required", [])) <= set(value)
        for key, item in value.items():
            if schema.get("additionalProperties") is False:
                assert key in schema["properties"]
            if key in schema.get("properties", {}):
                check(item, schema["properties"][key], root)
    return None


def finished_walks(
    compiler: GrammarCompiler, grammar: Any, seed: int, walks: int = 20, prefer: torch.Tensor | None = None
) -> list[Any]:
    generator = torch.Generator().manual_seed(seed)
    texts = [walk(compiler, grammar.matcher(), generator, prefer) for _ in range(walks)]
    done = [json.loads(text) for text in texts if text is not None]
    assert len(done) >= 15, f"only {len(done)} of {walks} walks finished"
    return done


def test_random_walks_over_a_schema_always_match_it(compiler) -> None:
    for value in finished_walks(compiler, compiler.json_schema(PERSON), seed=0):
        check(value, PERSON, PERSON)


def test_json_object_yields_objects(compiler) -> None:
    # Uniform walks over any JSON never close their strings; prefer punctuation, digits and literals.
    punctuation = set(b'"{}[],:0123456789')
    pieces = [compiler.token_bytes(t) for t in range(compiler.vocab_size)]
    prefer = torch.tensor([bool(p) and (set(p) <= punctuation or p in (b"true", b"null")) for p in pieces])
    values = finished_walks(compiler, compiler.json_object(), seed=1, prefer=prefer)
    assert all(isinstance(value, dict) for value in values)
    assert sum(len(json.dumps(value)) > 20 for value in values) >= 5  # not just {}
    for text in ("[1]", '"x"', "7", "null"):
        matcher = compiler.json_object().matcher()
        assert not all(matcher.accept(t) for t in compiler.tokenizer.encode(text, add_special_tokens=False))


def test_tool_calls_name_a_tool_and_match_its_parameters(compiler) -> None:
    tools = [WEATHER, ADD, NOW]
    params = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in tools}
    names = set()
    for value in finished_walks(compiler, compiler.tool_call(tools, None), seed=2):
        assert set(value) == {"name", "arguments"} and value["name"] in params
        check(value["arguments"], params[value["name"]], params[value["name"]])
        assert value["name"] != "now" or value["arguments"] == {}  # no parameters: called with {}
        names.add(value["name"])
    assert len(names) >= 2
    for value in finished_walks(compiler, compiler.tool_call(tools, "get_weather"), seed=3):
        assert value["name"] == "get_weather"
        check(value["arguments"], params["get_weather"], params["get_weather"])
    with pytest.raises(GrammarError) as info:
        compiler.tool_call(tools, "missing")
    assert info.value.param == "tool_choice" and "missing" in info.value.message


def follows(compiler: GrammarCompiler, grammar: Any, text: str) -> bool:
    """Whether the grammar takes ``text`` (as the tokenizer splits it) to its end."""
    matcher = grammar.matcher()
    return (
        all(matcher.accept(t) for t in compiler.tokenizer.encode(text, add_special_tokens=False)) and matcher.finished
    )


def test_tool_arguments_are_the_declared_ones_unless_the_tool_allows_more(compiler) -> None:
    def tool(parameters: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "f", "parameters": parameters}}]

    declared = {"type": "object", "properties": {"city": {"type": "string"}}}
    extra = '{"name": "f", "arguments": {"city": "Oslo", "zip": 1}}'
    assert follows(compiler, compiler.tool_call(tool(declared), "f"), '{"name": "f", "arguments": {"city": "Oslo"}}')
    assert not follows(compiler, compiler.tool_call(tool(declared), "f"), extra)
    assert follows(compiler, compiler.tool_call(tool({**declared, "additionalProperties": True}), "f"), extra)
    assert follows(compiler, compiler.tool_call(tool({}), None), '{"name": "f", "arguments": {}}')
    assert not follows(compiler, compiler.tool_call(tool({}), None), '{"name": "f", "arguments": {"a": 1}}')


def test_finished_grammar_allows_exactly_the_eos_ids(compiler) -> None:
    assert compiler.eos_token_ids == [0, 2]  # ours plus tokenizer.eos_token_id
    matcher = compiler.json_schema({"enum": ["yes"]}).matcher()
    for token in compiler.tokenizer.encode('"yes"', add_special_tokens=False):
        assert not matcher.finished and matcher.accept(token)
    assert matcher.finished and matcher.error is None
    assert allowed_tokens(matcher, compiler.vocab_size).tolist() == [0, 2]
    assert matcher.accept(2)


def test_a_token_outside_the_grammar_ends_the_row(compiler) -> None:
    matcher = compiler.json_object().matcher()
    assert not matcher.accept(compiler.tokenizer.convert_tokens_to_ids("a"))
    assert not matcher.finished and matcher.error and "Traceback" not in matcher.error
    assert not matcher.accept(2)  # llguidance "consumes" EOS in its error state; the row still failed
    assert allowed_tokens(matcher, compiler.vocab_size).tolist() == [0, 2]  # never an all -inf row


def test_json_is_compact(compiler) -> None:
    """No whitespace but the separators: a sampling model cannot spend its tokens on indentation."""
    tokens = compiler.tokenizer.convert_tokens_to_ids
    space, newline = tokens("Ġ"), tokens("Ċ")
    assert compiler.token_bytes(space) == b" " and compiler.token_bytes(newline) == b"\n"
    opened = compiler.json_object().matcher()
    assert opened.accept(tokens("{"))
    assert not opened.accept(compiler.tokenizer("\n").input_ids[0])


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"$ref": "#/$defs/nope"}, "/$defs/nope"),
        ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
        ({"type": "string", "format": "my-format"}, "my-format"),
        ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "oneOf"),
        ({"type": "object", "x-guidance": {"lenient": True}, "properties": {"a": {"if": {}}}}, "if"),
        ([{"type": "string"}], "JSON object"),
    ],
)
def test_unsupported_schemas_are_refused_by_name(compiler, schema, named) -> None:
    with pytest.raises(GrammarError) as info:
        compiler.json_schema(schema)
    assert named in info.value.message and info.value.param == "response_format"
    assert "\n" not in info.value.message and "Traceback" not in info.value.message


def test_bad_tools_are_refused(compiler) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "contains": {}}}}
    scalar = {"type": "function", "function": {"name": "g", "parameters": {"type": "string"}}}
    cases = (([bad], "contains"), ([], "non-empty"), ([{"type": "function"}], "tools[0]"), ([NOW, scalar], "tools[1]"))
    for tools, named in cases:
        with pytest.raises(GrammarError) as info:
            compiler.tool_call(tools, None)
        assert named in info.value.message and info.value.param == "tools"


def test_absurdly_deep_schemas_are_refused_not_crashed(compiler) -> None:
    deep: dict[str, Any] = {"type": "integer"}
    for _ in range(5000):
        deep = {"type": "array", "items": deep}
    with pytest.raises(GrammarError):
        compiler.json_schema(deep)
    with pytest.raises(GrammarError):
        compiler.tool_call([{"type": "function", "function": {"name": "f", "parameters": {"items": deep}}}], None)


def test_oversized_schema_is_refused(compiler) -> None:
    small = GrammarCompiler(compiler.tokenizer, max_schema_bytes=1000)
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(100)}}
    with pytest.raises(GrammarError) as info:
        small.json_schema(schema)
    assert "at most 1000" in info.value.message
    with pytest.raises(GrammarError):
        small.tool_call([{"type": "function", "function": {"name": "f", "parameters": schema}}], "f")
    compiler.json_schema(schema)  # fine under the default 64 KiB


@pytest.mark.parametrize("width", [100, 90])  # logits wider than the bitmask's 96 bits, or narrower
def test_apply_bitmask_masks_exactly_the_disallowed_tokens_and_the_extra_columns(width: int) -> None:
    vocab, rows = 70, [0, 2]
    generator = torch.Generator().manual_seed(0)
    bitmask = torch.randint(-(2**31), 2**31 - 1, (3, (vocab + 31) // 32), dtype=torch.int32, generator=generator)
    logits = torch.randn(3, width, generator=generator).to(torch.bfloat16)
    before = logits.clone()
    with torch.inference_mode():  # the engine's logits are inference tensors
        logits = logits.clone()
    apply_bitmask(logits, bitmask, rows)
    for row in range(3):
        for token in range(width):
            bit = token < bitmask.shape[1] * 32 and (int(bitmask[row, token // 32]) >> (token % 32)) & 1
            if row in rows and not bit:
                assert logits[row, token] == float("-inf")
            else:
                assert logits[row, token] == before[row, token]


def test_token_bytes_are_exact_even_inside_a_character(compiler) -> None:
    text = "é ü 中 🙂"
    ids = compiler.tokenizer.encode(text, add_special_tokens=False)
    pieces = [compiler.token_bytes(t) for t in ids]
    assert b"".join(pieces) == text.encode()
    assert any(len(p.decode("utf-8", "ignore").encode()) != len(p) for p in pieces)  # a split character
    with pytest.raises(ValueError):
        compiler.token_bytes(compiler.vocab_size)
