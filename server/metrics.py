"""Prometheus metrics of one server, in a registry of its own (so several apps can share a process).

Labels are bounded: no label carries a tenant, adapter or request id. ``/metrics`` renders
:meth:`Metrics.render`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Every metric the server exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "swaplora_chat_requests", "Chat completion requests by outcome.", ["outcome"], registry=r
        )
        self.ttft = Histogram(
            "swaplora_time_to_first_token_seconds",
            "Request arrival to first token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "swaplora_inter_token_seconds",
            "Gap between consecutive streamed pieces.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "swaplora_request_seconds", "Request arrival to last token.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_time = Histogram(
            "swaplora_queue_seconds", "Submission to start of prefill.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "swaplora_batch_size", "Rows per decode step.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.prompt_tokens = Counter("swaplora_prompt_tokens", "Prompt tokens prefilled.", registry=r)
        self.generated_tokens = Counter("swaplora_generated_tokens", "Tokens generated.", registry=r)
        self.running = Gauge("swaplora_running_requests", "Rows in the running batch.", registry=r)
        self.waiting = Gauge("swaplora_waiting_requests", "Requests queued for prefill.", registry=r)
        self.adapter_loads = Counter("swaplora_adapter_cache_misses", "Adapter loads (cache misses).", registry=r)
        self.adapter_hits = Counter("swaplora_adapter_cache_hits", "Requests whose adapter was loaded.", registry=r)
        self.adapter_host_hits = Counter(
            "swaplora_adapter_cache_host_hits", "Adapters brought back from the host-memory tier.", registry=r
        )
        self.adapter_evictions = Counter("swaplora_adapter_cache_evictions", "Adapters evicted.", registry=r)
        self.adapter_load_seconds = Histogram(
            "swaplora_adapter_load_seconds", "Time to load an adapter.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.loaded_adapters = Gauge("swaplora_loaded_adapters", "Adapters loaded next to the base.", registry=r)
        # Prefix cache: hit rate = prefix_cache_hit_tokens / prefix_cache_lookup_tokens.
        self.prefix_lookup_tokens = Counter(
            "swaplora_prefix_cache_lookup_tokens", "Prompt tokens looked up in the prefix cache.", registry=r
        )
        self.prefix_hit_tokens = Counter(
            "swaplora_prefix_cache_hit_tokens",
            "Prompt tokens reused from the prefix cache.",
            registry=r,
        )
        self.prefix_cache_bytes = Gauge("swaplora_prefix_cache_bytes", "KV bytes held by the prefix cache.", registry=r)
        # A cluster's engine replicas, as their answers report them (server.cluster).
        self.replica_requests = Counter(
            "swaplora_replica_requests",
            "Requests per engine replica; held=true: the replica already held the request's adapter id.",
            ["replica", "held"],
            registry=r,
        )
        self.replica_adapter_loads = Gauge(
            "swaplora_replica_adapter_loads",
            "Adapters each engine replica has read from the store.",
            ["replica"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
