"""The tenancy room: who a caller is and what it may do and spend.

Contract: :mod:`~server.tenancy.tenants` holds tenants and their API keys (hashed);
:mod:`~server.tenancy.tenant_settings` their settings and limits (the operator's ceilings, the
tenant's own lower limits); :mod:`~server.tenancy.auth` turns a request's key into a principal,
throttled by :mod:`~server.tenancy.auth_throttle`; :mod:`~server.tenancy.scope` resolves which
tenant a request acts for; :mod:`~server.tenancy.rate_limits` (requests, tokens, concurrency per
tenant, key and visitor) and :mod:`~server.tenancy.quotas` (disk) bound what a tenant spends;
:mod:`~server.tenancy.cors` lets only a tenant's own sites use its widget key.
"""
