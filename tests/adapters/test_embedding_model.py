"""Retrieval's shipped embedding model: extracted from the installed package (the real zip) once,
only the files this project loads, the weights checked against the pinned hash; a zip that
differs leaves nothing behind."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from adapters import embedding_model
from adapters.embedded import EmbeddedModelMissing
from adapters.embedding_model import embedding_model_dir, is_prepared, prepare_embedding_model


def test_the_shipped_model_is_extracted_once_with_only_what_is_loaded(tmp_path: Path) -> None:
    target = prepare_embedding_model(tmp_path)
    assert target == embedding_model_dir(tmp_path) and is_prepared(tmp_path)
    names = {p.name for p in target.iterdir()}
    loaded = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert names == {*loaded, ".complete"}
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert prepare_embedding_model(tmp_path) == target  # the second call extracts nothing
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary directory left


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"config.json": b"{}"}, "missing"),
        (
            {n: b"{}" for n in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")}
            | {"model.safetensors": b"not the pinned weights"},
            "not the pinned one",
        ),
        ({"config.json": b" " * (65 << 10)}, "larger than"),
    ],
)
def test_a_zip_that_differs_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes], message: str
) -> None:
    bad = _zip(tmp_path / "model.zip", members)
    monkeypatch.setattr(embedding_model, "package_file", lambda *_: bad)
    models = tmp_path / "models"
    with pytest.raises(EmbeddedModelMissing, match=message):
        prepare_embedding_model(models)
    assert not is_prepared(models) and list(models.iterdir()) == []
