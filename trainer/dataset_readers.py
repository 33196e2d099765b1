"""Ready-made datasets -> records: chat or prompt/completion JSONL, and question,answer CSV.

- JSONL: one JSON object per non-blank line, either ``{"messages": [{"role", "content"}, ...]}``
  (roles ``system``/``developer``/``user``/``assistant``; string contents, or OpenAI's list of
  text parts; no tool calls; at least one user message; the last message is the assistant's;
  extra keys such as ``name`` or ``weight`` are ignored) or ``{"prompt": str, "completion": str}``. Formats
  may mix. The first bad line stops
  the read with an error naming its line number.
- CSV: a header row with ``question`` and ``answer`` columns (any case, any order, other columns
  ignored); the delimiter (``,``, ``;`` or tab) is sniffed from the header. Blank rows are
  skipped; a row with an empty question or answer is an error naming its row.

Both raise :class:`~trainer.records.DocumentError` with code ``invalid_file``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from trainer.records import ChatRecord, DocumentError, QARecord, Record

_ROLES = {"system", "developer", "user", "assistant"}


def json_lines(text: str, filename: str) -> Iterator[tuple[int, str, object]]:
    """``(line number, "<filename>: line <n>", decoded value)`` of every non-blank line; a line that
    is not JSON is a :class:`DocumentError` naming it."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{filename}: line {number}"
        try:
            yield number, where, json.loads(line)
        except json.JSONDecodeError as error:
            raise DocumentError(f"{where} is not valid JSON ({error.msg})") from None


def jsonl_records(text: str, filename: str) -> list[Record]:
    """One :class:`ChatRecord` per line of chat or prompt/completion JSONL."""
    records: list[Record] = []
    for number, where, row in json_lines(text, filename):
        if not isinstance(row, dict):
            raise DocumentError(f'{where}: expected a JSON object with "messages" or "prompt"/"completion"')
        if "messages" in row:
            messages = _messages(row["messages"], where)
        elif "prompt" in row or "completion" in row:
            prompt, completion = row.get("prompt"), row.get("completion")
            if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt.strip():
                raise DocumentError(f'{where}: "prompt" and "completion" must both be strings, the prompt not empty')
            if not completion.strip():
                raise DocumentError(f'{where}: "completion" is empty')
            messages = (
                {"role": "user", "content": prompt.strip()},
                {"role": "assistant", "content": completion.strip()},
            )
        else:
            keys = ", ".join(sorted(row)) or "none"
            raise DocumentError(f'{where}: expected "messages" or "prompt"/"completion" (keys found: {keys})')
        records.append(ChatRecord(messages, f"{filename}:{number}"))
    return records


def _messages(value: object, where: str) -> tuple[dict[str, str], ...]:
    messages = read_messages(value, where, "messages")
    if messages[-1]["role"] != "assistant":
        raise DocumentError(f"{where}: the last message must be the assistant's (it is what is trained)")
    if not any(m["role"] == "user" for m in messages):
        raise DocumentError(f"{where}: the conversation has no user message")
    return messages


def read_messages(value: object, where: str, key: str) -> tuple[dict[str, str], ...]:
    """A non-empty list of chat messages (``key`` names it in errors) as ``{"role", "content"}``
    dicts: known roles, no tool calls, text content (OpenAI's text parts joined)."""
    if not isinstance(value, list) or not value:
        raise DocumentError(f'{where}: "{key}" must be a non-empty list')
    messages = []
    for index, message in enumerate(value):
        at = f"{where}: {key}[{index}]"
        if not isinstance(message, dict):
            raise DocumentError(f"{at} must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise DocumentError(f"{at}.role must be one of {sorted(_ROLES)}, not {role!r}")
        if message.get("tool_calls") or message.get("function_call"):
            raise DocumentError(f"{at} has tool calls; training on tool calls is not supported")
        if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
            if not all(
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                for part in content
            ):
                raise DocumentError(f"{at}.content parts must all be text parts")
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str) or not content.strip():
            raise DocumentError(f"{at}.content must be a non-empty string")
        messages.append({"role": role, "content": content})
    return tuple(messages)


def csv_records(text: str, filename: str) -> list[Record]:
    """One :class:`QARecord` per row of a question,answer CSV."""
    header = text.split("\n", 1)[0]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(header, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as error:
        raise DocumentError(f"{filename}: not a readable CSV file ({error})") from None
    columns = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "question" not in columns or "answer" not in columns:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise DocumentError(f'{filename}: the first row must name a "question" and an "answer" column (found {found})')
    q, a = columns.index("question"), columns.index("answer")
    records: list[Record] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        question = row[q].strip() if q < len(row) else ""
        answer = row[a].strip() if a < len(row) else ""
        if not question or not answer:
            raise DocumentError(f"{filename}: row {number} has an empty {'question' if not question else 'answer'}")
        records.append(QARecord(question, answer, f"{filename}:{number}"))
    return records
