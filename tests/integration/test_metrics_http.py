"""``/metrics`` of the live server after real chats: every engine figure the issue names is there,
moved by the chats, and no label carries a tenant, adapter or request id."""

from __future__ import annotations

import re

import httpx
import openai

from tests.integration.conftest import greedy, metric, metrics

HISTOGRAMS = (
    "swaplora_time_to_first_token_seconds",
    "swaplora_inter_token_seconds",
    "swaplora_request_seconds",
    "swaplora_queue_seconds",
    "swaplora_batch_size",
    "swaplora_adapter_load_seconds",
)
GAUGES = ("swaplora_running_requests", "swaplora_waiting_requests", "swaplora_loaded_adapters")
COUNTERS = (
    "swaplora_generated_tokens_total",
    "swaplora_prompt_tokens_total",
    "swaplora_adapter_cache_misses_total",
    "swaplora_adapter_cache_hits_total",
    "swaplora_adapter_cache_host_hits_total",
    "swaplora_adapter_cache_evictions_total",
)


def test_metrics_cover_latency_batching_and_the_adapter_cache(
    http: httpx.Client, acme: openai.OpenAI, support_v1
) -> None:
    before = metrics(http)
    for _ in range(2):  # the first use of the adapter may load it (a miss), the second is a hit
        stream = acme.chat.completions.create(
            model="acme/support",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        assert sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content) >= 2
    greedy(acme, "base", max_tokens=3)
    after = metrics(http)

    for name in HISTOGRAMS[:5]:
        assert metric(after, f"{name}_count") > metric(before, f"{name}_count"), name
    assert metric(after, "swaplora_adapter_load_seconds_count") == metric(after, "swaplora_adapter_cache_misses_total")
    assert (
        metric(after, "swaplora_adapter_cache_misses_total") + metric(after, "swaplora_adapter_cache_hits_total") >= 2
    )
    assert metric(after, "swaplora_adapter_cache_hits_total") > metric(before, "swaplora_adapter_cache_hits_total")
    assert metric(after, "swaplora_generated_tokens_total") - metric(before, "swaplora_generated_tokens_total") >= 15
    assert metric(after, "swaplora_prompt_tokens_total") > metric(before, "swaplora_prompt_tokens_total")
    for name in GAUGES + COUNTERS:
        assert re.search(rf"^{name} ", after, re.MULTILINE), name

    labels = set(re.findall(r"^swaplora_\w+\{([^}]*)\}", after, re.MULTILINE))
    keys = {pair.split("=")[0] for label in labels for pair in label.split(",") if pair}
    assert keys <= {"le", "outcome"}, keys  # bounded: buckets and outcomes only
    assert "acme" not in after and "support" not in after
