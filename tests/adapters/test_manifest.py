"""AdapterManifest: validated on construction, round-trips through JSON, refuses bad files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.manifest import AdapterManifest, ManifestError, utc_now_iso
from tests.adapters.helpers import make_manifest


def test_ids_and_normalisation() -> None:
    m = make_manifest()
    assert m.adapter_id == "acme/support"
    assert m.model_id == "acme/support@3"
    assert m.target_modules == ("q_proj", "v_proj")
    assert m.alpha == 16.0 and isinstance(m.alpha, float)
    assert m.metrics == {} and m.extra == {}


def test_json_round_trip(tmp_path: Path) -> None:
    m = make_manifest(metrics={"eval_loss": 1.25}, extra={"lr": 2e-4, "data_sha256": "d" * 64}, source="training")
    assert AdapterManifest.from_json(m.to_json()) == m
    path = tmp_path / "manifest.json"
    m.write(path)
    assert AdapterManifest.read(path) == m
    assert json.loads(path.read_text())["target_modules"] == ["q_proj", "v_proj"]


def test_frozen_and_copies_nested_dicts() -> None:
    metrics = {"eval_loss": 1.0}
    m = make_manifest(metrics=metrics)
    metrics["eval_loss"] = 99.0
    assert m.metrics == {"eval_loss": 1.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.version = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"tenant": "../etc"},
        {"name": "a/b"},
        {"version": 0},
        {"version": True},
        {"version": "1"},
        {"rank": 0},
        {"alpha": 0},
        {"alpha": float("nan")},
        {"weights_sha256": "xyz"},
        {"source": "download"},
        {"target_modules": "q_proj"},
        {"metrics": {"x": object()}},
        {"metrics": {"x": float("inf")}},
        {"extra": []},
        {"created_at": ""},
    ],
)
def test_invalid_fields(overrides: dict[str, Any]) -> None:
    with pytest.raises(ManifestError):
        make_manifest(**overrides)


def test_from_json_refuses_bad_documents() -> None:
    good = make_manifest().to_dict()
    with pytest.raises(ManifestError, match="not valid JSON"):
        AdapterManifest.from_json(b"{nope")
    with pytest.raises(ManifestError, match="JSON object"):
        AdapterManifest.from_json("[]")
    with pytest.raises(ManifestError, match="Unknown"):
        AdapterManifest.from_dict({**good, "surprise": 1})
    missing = dict(good)
    del missing["rank"]
    with pytest.raises(ManifestError, match="Missing manifest fields: rank"):
        AdapterManifest.from_dict(missing)


def test_utc_now_iso_shape() -> None:
    now = utc_now_iso()
    assert now.endswith("Z") and "T" in now and len(now) == 20
