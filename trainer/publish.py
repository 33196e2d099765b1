"""Publishing a trained LoRA: PEFT safetensors -> validation -> an atomic new store version.

:func:`publish_adapter` saves the PEFT adapter of a prepared model (safetensors only, never
pickle) into a private temporary directory, checks it with
:func:`adapters.validation.validate_adapter` against the base's linear layers exactly as an
upload would be checked, and publishes it through :meth:`adapters.store.AdapterStore.publish`
(temporary directory + rename: the version appears complete or not at all) with an
:class:`adapters.manifest.AdapterManifest` of ``source="training"``: the base spec hash and
chat-template hash of the base it was trained on, the LoRA shape, the weights' sha256, the
caller's ``metrics`` and ``extra``. Non-finite metric values (a NaN loss with no held-out data)
are stored as null, since manifests hold JSON values only.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from adapters.hyperparameters import MAX_RANK
from adapters.manifest import AdapterManifest, sha256_file
from adapters.store import CONFIG_FILE, WEIGHTS_FILE, AdapterStore
from adapters.validation import validate_adapter
from trainer.qlora import Prepared


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, inf) replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def publish_adapter(
    prepared: Prepared,
    store: AdapterStore,
    tenant: str,
    name: str,
    *,
    metrics: dict[str, Any],
    extra: dict[str, Any],
) -> AdapterManifest:
    """Validate the trained LoRA in ``prepared`` and publish it as the next ``tenant/name`` version."""
    with tempfile.TemporaryDirectory(prefix="swaplora-adapter-") as tmp:
        work = Path(tmp)
        prepared.model.save_pretrained(str(work), safe_serialization=True)
        weights = work / WEIGHTS_FILE
        validated = validate_adapter((work / CONFIG_FILE).read_bytes(), weights, prepared.linear_shapes, MAX_RANK)
        weights_sha256 = sha256_file(weights)
        config = validated.config_bytes()

        def make_manifest(version: int) -> AdapterManifest:
            return validated.manifest(
                tenant=tenant,
                name=name,
                version=version,
                spec=prepared.spec,
                weights_sha256=weights_sha256,
                source="training",
                metrics=json_safe(metrics),
                extra=json_safe(extra),
            )

        return store.publish(tenant, name, {CONFIG_FILE: config, WEIGHTS_FILE: weights}, make_manifest)
