"""Answers grounded in the tenant's documents: a per-tenant passage index and retrieval for chat.

:mod:`server.knowledge.passage_index` keeps each tenant's passages (written by ``trainer.check``
when a file is uploaded) in a tantivy index of its own under ``<data>/knowledge/<tenant>``;
:mod:`server.knowledge.grounding` turns a conversation into a query, the hits into the prompt's
passages block and the reply's ``citations``.
"""
