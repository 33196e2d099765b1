"""The rollouts room: what each adapter version served, what people thought of it, and the scoreboard.

Contract: :mod:`~server.rollouts.served_log` records every chat completion (id, tenant, the version
that answered, latencies, tokens; the conversation's text only where the tenant's
``store_conversations`` is on), buffered so a request never waits on the database;
:mod:`~server.rollouts.feedback` keeps end users' thumbs (and comments, where texts are stored)
against the completion they rate; :mod:`~server.rollouts.scoreboard` summarises both per version
with the Compare tab's votes. Traffic splits themselves live with the adapters
(:mod:`adapters.traffic_split`): replicas that share the store share them. Nothing here imports
the engine or the routes.
"""
