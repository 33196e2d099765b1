"""The constrained bench's workload: the customer-record JSON schema, a checker for the keywords it
uses (no jsonschema dependency), and the rows' prompts. bench/constrained_bench.py measures with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["vip", "new", "churn-risk", "wholesale", "newsletter"]},
            "maxItems": 4,
        },
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "maxLength": 60},
                "city": {"type": "string", "maxLength": 40},
                "postcode": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["street", "city", "postcode"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "tags", "address"],
    "additionalProperties": False,
}


def schema_errors(value: Any, schema: dict[str, Any], at: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (the keywords :data:`SCHEMA` uses; no jsonschema dependency)."""
    kind = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    }
    if kind is not None and not checks[kind](value):
        return [f"{at}: not {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in enum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{at}: length {len(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int) and not (schema.get("minimum", value) <= value <= schema.get("maximum", value)):
        errors.append(f"{at}: {value} out of range")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{at}: {len(value)} items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{at}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{at}: missing {key}" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{at}: extra {key}" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{at}.{key}")
    return errors


def prompt_texts(streams: int, every: int) -> list[tuple[str, bool]]:
    """(user message, asks for JSON) per row: every ``every``-th row asks for a customer record."""
    out = []
    for i in range(streams):
        if i % every == 0:
            text = (
                f"Create the CRM record for customer number {i}: a retired teacher who lives in a small town "
                "and buys garden tools every spring. Reply with JSON only: name, age, tags and address."
            )
            out.append((text, True))
        else:
            out.append((f"Write a long story about dragon number {i}.", False))
    return out
