"""OpenAI's preference JSONL: the example file reads as pairs, the checker names its format, every
malformed line is refused with its line number, and the two readers refuse each other's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.check import check_file
from trainer.documents import DocumentError, load_pairs, load_records, read_document
from trainer.preference_data import is_preference_jsonl, preference_pairs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "preferences" / "sign-off.jsonl"
SIGN_OFF = "— The Lumen Lane team"


def line(**overrides: object) -> str:
    row: dict[str, object] = {
        "input": {"messages": [{"role": "user", "content": "When are you open?"}], "tools": []},
        "preferred_output": [{"role": "assistant", "content": "9:30 to 18:00.\n— The Lumen Lane team"}],
        "non_preferred_output": [{"role": "assistant", "content": "9:30 to 18:00."}],
    }
    row.update(overrides)
    return json.dumps({k: v for k, v in row.items() if v is not None})


def test_the_example_file_is_forty_pairs_preferring_the_sign_off() -> None:
    document = read_document(EXAMPLE, EXAMPLE.name)
    assert document.format == "preference_jsonl" and document.records == [] and len(document.pairs) == 40
    pairs = load_pairs(EXAMPLE, EXAMPLE.name)
    assert all(p.preferred == f"{p.non_preferred}\n{SIGN_OFF}" for p in pairs)
    assert pairs[0].messages == ({"role": "user", "content": "When are you open?"},)
    assert pairs[0].source == "sign-off.jsonl:1"
    verdict = check_file(EXAMPLE, EXAMPLE.name)
    assert verdict["ok"] and verdict["format"] == "preference_jsonl" and verdict["records"] == 40


def test_text_parts_system_turns_and_earlier_turns_are_read() -> None:
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there."}]
    conversation = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Open today?"},
    ]
    (pair,) = preference_pairs(
        line(input={"messages": conversation}, preferred_output=[{"role": "assistant", "content": parts}]), "p.jsonl"
    )
    assert pair.preferred == "Hello there." and pair.messages[-1]["content"] == "Open today?"
    assert len(pair.messages) == 4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (line(non_preferred_output=None), "keys found: input, preferred_output"),
        (line(input=[{"role": "user", "content": "x"}]), '"input" must be an object with "messages"'),
        (line(input={"messages": []}), '"input.messages" must be a non-empty list'),
        (line(input={"messages": [{"role": "robot", "content": "x"}]}), "input.messages[0].role"),
        (line(input={"messages": [{"role": "user", "content": " "}]}), "input.messages[0].content"),
        (
            line(input={"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            "must end with the user's message",
        ),
        (line(preferred_output=[]), '"preferred_output" must be a non-empty list'),
        (line(preferred_output={"role": "assistant", "content": "x"}), '"preferred_output" must be a non-empty list'),
        (line(preferred_output=[{"role": "user", "content": "x"}]), "exactly one assistant message"),
        (
            line(non_preferred_output=[{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]),
            "exactly one assistant message",
        ),
        (
            line(preferred_output=[{"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}]),
            "tool calls",
        ),
        (line(preferred_output=[{"role": "assistant", "content": "9:30 to 18:00."}]), "are the same answer"),
        (line() + "\n" + '{"messages": [{"role": "user", "content": "x"}]}', "line 2: expected a preference pair"),
        (line() + "\n\n{not json", "line 3 is not valid JSON"),
        (line() + "\n[1]", "line 2: expected a preference pair"),
    ],
)
def test_bad_lines_are_refused_naming_the_line(text: str, fragment: str) -> None:
    with pytest.raises(DocumentError) as caught:
        preference_pairs(text, "p.jsonl")
    assert fragment in caught.value.message and caught.value.message.startswith("p.jsonl: line")
    assert caught.value.code == "invalid_file"


def test_the_first_line_decides_the_kind() -> None:
    assert is_preference_jsonl("\n" + line())
    assert not is_preference_jsonl('{"messages": []}\n' + line())
    assert not is_preference_jsonl("{broken")


def test_each_reader_refuses_the_others_files(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match='method {"type": "dpo"}'):
        load_records(EXAMPLE, EXAMPLE.name)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}))
    with pytest.raises(DocumentError, match="DPO needs preference JSONL.*this file is jsonl"):
        load_pairs(chat, chat.name)
