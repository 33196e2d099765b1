"""Per-version scoreboard of an adapter: requests, end users' thumbs with a confidence interval,
Compare-tab win rates, latency percentiles.

Contract: :func:`scoreboard` reads the served log, the feedback and the comparison votes of one
tenant's adapter and returns, per version that served or was voted on, OpenAI-style JSON:
``requests``, ``thumbs_up``, ``thumbs_down``, ``approval`` (up / rated, None without ratings) with
its 95 % Wilson score interval (``approval_interval``; honest at small counts, where the normal
approximation is not), ``compare`` (``wins``, ``votes``, ``win_rate``), and ``latency_ms`` /
``ttft_ms`` percentiles (p50, p90, p99) over the latest 10,000 requests of the version.
"""

from __future__ import annotations

import math
from typing import Any

from server.comparisons import ComparisonStore
from server.rollouts.feedback import FeedbackStore
from server.rollouts.served_log import ServedLog

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion; None without trials."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50, p90 and p99 (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99)}


def scoreboard(
    served: ServedLog, feedback: FeedbackStore, comparisons: ComparisonStore, tenant: str, name: str
) -> list[dict[str, Any]]:
    """One entry per version, ascending; see the module docstring."""
    adapter = f"{tenant}/{name}"
    counts = served.counts(tenant, adapter)
    timings = served.latencies(tenant, adapter)
    thumbs = feedback.thumbs(tenant, adapter)
    votes = comparisons.model_records(tenant, f"{adapter}@")
    voted = {int(model.rpartition("@")[2]): record for model, record in votes.items()}
    versions = sorted({v for v in (*counts, *thumbs, *voted) if v is not None})
    board = []
    for version in versions:
        up, down = thumbs.get(version, (0, 0))
        wins, polls = voted.get(version, (0, 0))
        interval = wilson_interval(up, up + down)
        pairs = timings.get(version, [])
        board.append(
            {
                "version": version,
                "model": f"{adapter}@{version}",
                "requests": counts.get(version, 0),
                "thumbs_up": up,
                "thumbs_down": down,
                "approval": up / (up + down) if up + down else None,
                "approval_interval": list(interval) if interval else None,
                "compare": {"wins": wins, "votes": polls, "win_rate": wins / polls if polls else None},
                "latency_ms": percentiles([latency for latency, _ in pairs]),
                "ttft_ms": percentiles([ttft for _, ttft in pairs if ttft is not None]),
            }
        )
    return board
