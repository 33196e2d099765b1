"""Identifier syntax: what may become a path component and what a chat ``model`` field means."""

from __future__ import annotations

import pytest

from adapters.ids import AdapterRef, InvalidId, parse_model_id, validate_adapter_name, validate_tenant_id


@pytest.mark.parametrize("value", ["acme", "a", "acme-2", "0day", "a" * 63])
def test_valid_slugs(value: str) -> None:
    assert validate_tenant_id(value) == value
    assert validate_adapter_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "..",
        ".",
        "a/b",
        "../etc",
        "Acme",
        "-acme",
        "a.b",
        "a b",
        "a" * 64,
        "ä",
        "a\x00",
        "c\n",
        "acme\n",
        None,
        3,
        ["a"],
    ],
)
def test_invalid_slugs(value: object) -> None:
    with pytest.raises(InvalidId):
        validate_tenant_id(value)
    with pytest.raises(InvalidId):
        validate_adapter_name(value)


def test_parse_model_id() -> None:
    assert parse_model_id("base") is None
    assert parse_model_id("acme/support") == AdapterRef("acme", "support", None)
    ref = parse_model_id("acme/support@12")
    assert ref == AdapterRef("acme", "support", 12)
    assert str(ref) == "acme/support@12" and ref.adapter_id == "acme/support"
    assert str(AdapterRef("acme", "support")) == "acme/support"


@pytest.mark.parametrize(
    "value",
    [
        "acme",
        "acme/",
        "/support",
        "acme/support@0",
        "acme/support@01",
        "acme/../x",
        "acme/s@v",
        "acme/support\n",
        "acme/support@2\n",
        5,
        None,
    ],
)
def test_parse_model_id_refuses(value: object) -> None:
    with pytest.raises(InvalidId):
        parse_model_id(value)
