"""swaplora's HTTP server: Starlette routes, auth, admission and the model engine.

Three rooms and a hall: :mod:`server.engine` (the model, the batch, admission),
:mod:`server.tenancy` (tenants, keys, limits, quotas, CORS) and :mod:`server.jobs` (training
files and fine-tuning jobs); routes/, app, settings, errors, schemas, metrics, database and
comparisons in the hall. Import direction: routes -> tenancy, jobs, engine; the engine imports
nothing of server/ but metrics and never starlette; server/ never imports trainer/ (adapters
reach it through the store).
"""
