"""The bundled QLoRA trainer: documents -> chat samples -> a LoRA adapter published to the store.

Not built yet (its own issue). It will load the base through :func:`adapters.base_model.load_base`
and publish through :class:`adapters.store.AdapterStore`, and never import server/.
"""
