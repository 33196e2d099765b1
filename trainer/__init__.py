"""The bundled QLoRA trainer: documents -> chat samples -> a LoRA adapter published to the store.

Pipeline: :mod:`trainer.documents` (files -> records), :mod:`trainer.samples` (records -> chat
samples, held-out split, probes), :mod:`trainer.tokenize` (assistant-only labels),
:mod:`trainer.packing` (rows without padding), :mod:`trainer.qlora` (NF4 base through
:func:`adapters.base_model.load_base`, LoRA, the training loop), :mod:`trainer.evaluate`
(held-out loss, probe recall), :mod:`trainer.publish` (validated, atomic publish through
:class:`adapters.store.AdapterStore`). Preference training (DPO) swaps the data and the loss:
:mod:`trainer.preference_data` (OpenAI's preference JSONL), :mod:`trainer.preference_rows`,
:mod:`trainer.dpo`, behind :mod:`trainer.recipe`. :mod:`trainer.job` runs them in order; the server starts
it as ``python -m trainer.worker`` (docs/training-jobs.md), ``swaplora train`` through
:mod:`trainer.terminal`. Nothing here imports server/.
"""
