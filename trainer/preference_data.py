"""OpenAI's preference JSONL -> preference pairs: the training data of a DPO job.

One JSON object per non-blank line, exactly OpenAI's format (what ``GET /v1/feedback/export
?format=preference`` writes too)::

    {"input": {"messages": [{"role": "user", "content": "..."}]},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

- ``input.messages``: a conversation as in chat JSONL (roles ``system``/``developer``/``user``/
  ``assistant``, text contents or OpenAI's text parts, no tool calls) with at least one user
  message, ending with one (the answers reply to it). Other keys of ``input`` (``tools``,
  ``parallel_tool_calls``) and of the line are ignored, as the chat reader ignores them.
- ``preferred_output`` and ``non_preferred_output``: a list of exactly one assistant message
  each, not empty, and not the same text.

:func:`is_preference_jsonl` says whether a JSONL text is of this kind (its first non-blank line
is an object with ``input``, ``preferred_output`` or ``non_preferred_output``);
:func:`preference_pairs` reads every line or raises :class:`~trainer.records.DocumentError`
(``invalid_file``) naming the first bad line and what is wrong with it. Sizes are bounded by the
file reader (:mod:`trainer.documents`) as for every text format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trainer.dataset_readers import json_lines, read_messages
from trainer.records import DocumentError

_KEYS = ("input", "preferred_output", "non_preferred_output")


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with the answer to prefer and the one not to."""

    messages: tuple[dict[str, str], ...]
    """The conversation before the answers (no system prompt added yet); ends with the user."""
    preferred: str
    non_preferred: str
    source: str
    """``file:line``."""

    @property
    def characters(self) -> int:
        return sum(len(m["content"]) for m in self.messages) + len(self.preferred) + len(self.non_preferred)


def is_preference_jsonl(text: str) -> bool:
    """Whether the first non-blank line is a preference object (the reader then reads every line)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and any(key in row for key in _KEYS)


def preference_pairs(text: str, filename: str) -> list[PreferencePair]:
    """One :class:`PreferencePair` per non-blank line (rules in the module docstring)."""
    pairs = [_pair(row, where, f"{filename}:{number}") for number, where, row in json_lines(text, filename)]
    if not pairs:
        raise DocumentError(f"{filename}: no preference pairs found")
    return pairs


def _pair(row: object, where: str, source: str) -> PreferencePair:
    if not isinstance(row, dict) or any(key not in row for key in _KEYS):
        keys = ", ".join(sorted(row)) if isinstance(row, dict) and row else "none"
        raise DocumentError(
            f'{where}: expected a preference pair with "input", "preferred_output" and "non_preferred_output" '
            f"(keys found: {keys})"
        )
    prompt = row["input"]
    if not isinstance(prompt, dict) or "messages" not in prompt:
        raise DocumentError(f'{where}: "input" must be an object with "messages"')
    messages = read_messages(prompt["messages"], where, "input.messages")
    if messages[-1]["role"] != "user":
        raise DocumentError(f"{where}: input.messages must end with the user's message (the answers reply to it)")
    preferred = _answer(row["preferred_output"], where, "preferred_output")
    non_preferred = _answer(row["non_preferred_output"], where, "non_preferred_output")
    if preferred == non_preferred:
        raise DocumentError(f"{where}: preferred_output and non_preferred_output are the same answer")
    return PreferencePair(messages, preferred, non_preferred, source)


def _answer(value: object, where: str, key: str) -> str:
    messages = read_messages(value, where, key)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise DocumentError(f"{where}: {key} must be a list of exactly one assistant message")
    return messages[0]["content"]
