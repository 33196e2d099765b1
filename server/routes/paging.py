"""OpenAI's cursor pagination for list routes: ``?after=<id>&limit=<n>`` in, a list object out.

Contract: :func:`page_query` reads ``after`` (the id of the last item already seen, or None) and
``limit`` (an integer in 1..``maximum``, else a 400 naming ``limit``); :func:`list_object` builds
``{"object": "list", "data", "has_more", "first_id", "last_id"}``, the shape the ``openai`` client's
cursor pages iterate over.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from server.errors import bad_request


def page_query(request: Request, default: int, maximum: int) -> tuple[str | None, int]:
    after = request.query_params.get("after") or None
    raw = request.query_params.get("limit")
    if raw is None:
        return after, default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise bad_request(f"'limit' must be an integer from 1 to {maximum}.", param="limit")
    return after, int(raw)


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
