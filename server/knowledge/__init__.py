"""Answers grounded in the tenant's documents: a per-tenant knowledge base and retrieval for chat.

:mod:`server.knowledge.knowledge_base` is the entry point: each tenant's passages (written by
``trainer.check`` when a file is uploaded) in a tantivy (BM25) index of its own under
``<data>/knowledge/<tenant>`` (:mod:`.passage_index`) and their vectors under
``<data>/knowledge-vectors/<tenant>`` (:mod:`.dense_index`, embedded by the shipped MiniLM in
threads of their own: :mod:`.embedder_threads`), searched by both and fused by reciprocal rank.
:mod:`server.knowledge.grounding` turns a conversation into a query, the hits into the prompt's
passages block and the reply's ``citations``.
"""
