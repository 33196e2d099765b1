"""The Adapters tab's rollout panel: each version's scoreboard next to the traffic split, a split
editor and a promote button.

Contract: :func:`scoreboard_rows` turns ``GET /v1/adapters/{id}/stats`` into table rows (traffic
share, requests, thumbs, approval with its 95 % interval, Compare win rate, latency p50/p90);
:func:`parse_split` reads the editor's ``"1: 90, 2: 10"`` (a clear error for anything else; the
server checks the versions and the sum again); :func:`load_stats`, :func:`set_split` and
:func:`promote` call the API with the signed-in key and show the server's own refusals.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from ui.session import Session, require

STATS_HEADERS = ["Version", "Traffic %", "Requests", "👍", "👎", "Approval (95% CI)", "Compare wins", "p50 / p90 ms"]
_PART = re.compile(r"\s*(\d{1,9})\s*:\s*(\d{1,3})\s*")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def scoreboard_rows(stats: dict[str, Any] | None) -> list[list[Any]]:
    if not stats:
        return []
    traffic = stats.get("traffic") or {}
    rows = []
    for entry in stats["data"]:
        interval = entry.get("approval_interval")
        approval = _percent(entry["approval"]) + (
            f" ({_percent(interval[0])}-{_percent(interval[1])})" if interval else ""
        )
        compare = entry["compare"]
        latency = entry.get("latency_ms") or {}
        rows.append(
            [
                entry["version"],
                traffic.get(str(entry["version"]), ""),
                entry["requests"],
                entry["thumbs_up"],
                entry["thumbs_down"],
                approval,
                f"{compare['wins']}/{compare['votes']}" if compare["votes"] else "",
                f"{latency.get('p50', '')} / {latency.get('p90', '')}" if latency else "",
            ]
        )
    return rows


def parse_split(text: str) -> dict[str, int] | None:
    """``"1: 90, 2: 10"`` -> ``{"1": 90, "2": 10}``; empty -> None (end the split)."""
    if not text.strip():
        return None
    split = {}
    for part in text.split(","):
        match = _PART.fullmatch(part)
        if not match:
            raise gr.Error("Write the split as version: percent pairs, e.g. 1: 90, 2: 10.", print_exception=False)
        split[match[1]] = int(match[2])
    return split


async def load_stats(session: Session | None, adapter_id: str | None) -> tuple[list[list[Any]], str]:
    if session is None or not adapter_id:
        return [], ""
    async with session.client() as api:
        stats = await api.adapter_stats(adapter_id)
    traffic = stats.get("traffic") or {}
    return scoreboard_rows(stats), ", ".join(f"{v}: {w}" for v, w in traffic.items())


async def set_split(session: Session | None, adapter_id: str | None, text: str) -> Any:
    session = require(session)
    if not adapter_id:
        raise gr.Error("Pick an adapter first.", print_exception=False)
    split = parse_split(text)
    async with session.client() as api:
        await api.set_traffic(adapter_id, split)
        gr.Info(
            f"{adapter_id}: " + ("traffic split set." if split else "the split ended; the current version answers.")
        )
        return await api.adapters()


async def promote(session: Session | None, adapter_id: str | None, version: float | None) -> Any:
    session = require(session)
    if not adapter_id or version is None or version < 1:
        raise gr.Error("Pick an adapter and a version.", print_exception=False)
    async with session.client() as api:
        await api.set_traffic(adapter_id, {str(int(version)): 100})
        gr.Info(f"{adapter_id}@{int(version)} now takes all traffic.")
        return await api.adapters()
