"""Engine replicas on Ray Serve: ``swaplora serve --cluster ADDRESS``.

Contract:

- The HTTP process keeps everything but the engine: routes, auth, tenants, the database (the
  control plane), the UI, the widget, and the tokenizer (prompts are rendered and grammars
  compiled here). Chat requests go to a Ray Serve deployment of engine replicas
  (:mod:`server.cluster.replica`), each today's engine: one base, batched LoRA, byte-budgeted
  adapter cache, prefix cache.
- Ray Serve's model multiplexing routes each request by its adapter version id
  (``tenant/name@version``; ``base`` for none), so a tenant's requests reach replicas that already
  hold its adapter; each replica keeps at most ``cluster_adapters_per_replica`` ids (LRU).
- Replicas read adapters from the store the HTTP process publishes to (one directory on a shared
  filesystem): a new version is a new id, servable by every replica at once, no restart.
- :class:`~server.cluster.cluster_admitter.ClusterAdmitter` is the routes'
  :class:`~server.engine.admission.GenerationSource`: events stream back as generated; a client
  that leaves cancels its rows on the replica; a replica that dies fails only its own rows.
- Fine-tuning jobs run as Ray tasks (:mod:`server.cluster.training`).
"""
