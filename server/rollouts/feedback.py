"""End users' ratings of answers: thumbs up or down on a completion id, kept with the version that answered.

Contract: :meth:`FeedbackStore.rate` stores one rating per completion (a later one replaces it:
a visitor may change their mind); the completion must be in the served log and belong to the
rater's tenant (the route checks, and answers 404 otherwise). A comment is kept only where the
tenant stores conversations; otherwise only the rating is. :meth:`FeedbackStore.thumbs` counts per
version; :meth:`FeedbackStore.rated_conversations` joins ratings with stored conversations for the
preference export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from server.database import Database
from server.rollouts.served_log import SCHEMA, Served

Rating = Literal["up", "down"]
MAX_COMMENT_CHARS = 2000


class FeedbackStore:
    def __init__(self, db_path: Path) -> None:
        self._db = Database(db_path, SCHEMA)

    def rate(self, served: Served, rating: Rating, comment: str | None) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO feedback (completion_id, tenant, adapter, version, rating, comment, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(completion_id) DO UPDATE SET "
                "rating = excluded.rating, comment = excluded.comment, created_at = excluded.created_at",
                (served.id, served.tenant, served.adapter, served.version, rating, comment, time.time()),
            )

    def thumbs(self, tenant: str, adapter: str) -> dict[int | None, tuple[int, int]]:
        """Per version: (thumbs up, thumbs down)."""
        with self._db.transaction() as db:
            rows = db.execute(
                "SELECT version, SUM(rating = 'up'), SUM(rating = 'down') FROM feedback "
                "WHERE tenant IS ? AND adapter = ? GROUP BY version",
                (tenant, adapter),
            ).fetchall()
        return {version: (int(up), int(down)) for version, up, down in rows}

    def rated_conversations(self, tenant: str, limit: int) -> list[tuple[str, Rating]]:
        """(conversation JSON, rating) of the tenant's rated completions whose texts were stored."""
        with self._db.transaction() as db:
            rows = db.execute(
                "SELECT s.conversation, f.rating FROM feedback f JOIN served s ON s.id = f.completion_id "
                "WHERE f.tenant = ? AND s.conversation IS NOT NULL ORDER BY f.created_at DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [(conversation, rating) for conversation, rating in rows]
