"""The engine room: one worker thread owns the model and decodes every admitted request in one batch.

Contract: :class:`server.engine.step_loop.Engine` runs the step loop (admit, prefill in chunks,
decode, emit); :mod:`~server.engine.admission` is the async bridge the routes use (queue a
request, stream its events) and raises :class:`~server.engine.admission.QueueFull` when the
waiting room is full, a domain error the route turns into 429. Waiting requests live in a
:mod:`~server.engine.fair_queue` (round-robin over tenants, a per-tenant cap on batch rows);
the batch's KV cache is a :mod:`~server.engine.kv_batch`; tokens are drawn by
:mod:`~server.engine.sampling` and turned into text by :mod:`~server.engine.detokenizer`.
Adapters: :mod:`~server.engine.adapter_cache` keeps them resident (device, then host, LRU);
:mod:`~server.engine.lora_stack`, :mod:`~server.engine.lora_slots` and
:mod:`~server.engine.lora_batch` apply a different LoRA to each batch row in one forward pass
(shrink with A, expand with B, per slot).

Nothing here imports starlette or the rest of server/ but :mod:`server.metrics`
(tests/test_layout.py holds that rule).
"""
