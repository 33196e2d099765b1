"""The shared contract between server/ and trainer/, importing neither.

- :mod:`adapters.ids` — tenant, adapter-name and model-id syntax.
- :mod:`adapters.base_model` — the base-model spec (stable hash) and the one NF4 loader.
- :mod:`adapters.execution_plan`, :mod:`adapters.plan_choice`, :mod:`adapters.plan_probe`,
  :mod:`adapters.nf4_forms`, :mod:`adapters.machine` — how this machine computes with the NF4
  base (compute dtype; weights packed or dequantized once), chosen by measurement.
- :mod:`adapters.chat_format` — the chat template's rendering both sides share.
- :mod:`adapters.embedded` — the embedded SmolLM2-135M-Instruct, converted once to safetensors.
- :mod:`adapters.manifest` — the manifest stored with every adapter version.
- :mod:`adapters.validation` — checks that PEFT LoRA files fit a loaded base.
- :mod:`adapters.store` — the on-disk store: tenant/name/version, atomic publish, rollback, sweep.
- :mod:`adapters.job_spec`, :mod:`adapters.worker_events`, :mod:`adapters.hyperparameters`,
  :mod:`adapters.training_method` — the training job's contract: the spec the server hands a
  worker, the events the worker writes back, and the hyperparameters and method (supervised or
  DPO) both validate.
"""
