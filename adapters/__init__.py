"""The shared contract between server/ and trainer/, importing neither.

- :mod:`adapters.ids` — tenant, adapter-name and model-id syntax.
- :mod:`adapters.base_model` — the base-model spec (stable hash) and the one NF4 loader.
- :mod:`adapters.embedded` — the embedded SmolLM2-135M-Instruct, converted once to safetensors.
- :mod:`adapters.manifest` — the manifest stored with every adapter version.
- :mod:`adapters.validation` — checks that PEFT LoRA files fit a loaded base.
- :mod:`adapters.store` — the on-disk store: tenant/name/version, atomic publish, rollback.
"""
