"""A/B comparison votes in SQLite: which of two models' answers to one prompt a person preferred.

Contract:

- A vote names the tenant it belongs to (None for the admin's own votes), the left and right
  model ids as served (``base`` or ``tenant/name@version``), the sha256 of the prompt, the verdict
  (:data:`VOTES`), whether the sides were hidden (blind) and when it was cast. Votes are
  append-only.
- The texts (the prompt and both answers, :class:`VoteTexts`) are kept only when the caller
  passes them, which the route does only for tenants that store conversations
  (``store_conversations``); :meth:`ComparisonStore.preferences` turns the tenant's decided votes
  with texts (``left`` or ``right``, two different answers) into preference pairs.
- :meth:`ComparisonStore.list` and :meth:`ComparisonStore.stats` read one tenant's votes, or
  every vote (the admin's own included) when ``tenant`` is None.
- Stats are per unordered pair: ``a`` vs ``b`` and ``b`` vs ``a`` count together, reported with
  the pair's models in sorted order and each model's wins, ties, both-bad and win rates
  (wins / votes).
- Every call opens its own connection (WAL mode), so threads and processes may share the file.
"""

from __future__ import annotations

import builtins
import hashlib
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from adapters.manifest import utc_now_iso

VOTES: Final = ("left", "right", "tie", "both_bad")
"""``left``/``right``: that side's answer was better; ``tie``: equally good; ``both_bad``: neither."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS comparisons (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT,
    left_model TEXT NOT NULL,
    right_model TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('left', 'right', 'tie', 'both_bad')),
    blind INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_tenant ON comparisons(tenant, seq);
CREATE TABLE IF NOT EXISTS comparison_texts (
    id TEXT PRIMARY KEY REFERENCES comparisons(id),
    prompt TEXT NOT NULL,
    left_answer TEXT NOT NULL,
    right_answer TEXT NOT NULL
);
"""
_COLUMNS = "id, tenant, left_model, right_model, prompt_sha256, vote, blind, created_at"


@dataclass(frozen=True)
class Comparison:
    """One recorded vote."""

    id: str
    tenant: str | None
    left_model: str
    right_model: str
    prompt_sha256: str
    vote: str
    blind: bool
    created_at: str
    """ISO-8601 UTC."""

    def to_dict(self) -> dict[str, Any]:
        return {"object": "comparison", **self.__dict__}


@dataclass(frozen=True)
class PairStats:
    """Votes on one unordered pair of models, ``model_a`` < ``model_b``."""

    model_a: str
    model_b: str
    votes: int
    model_a_wins: int
    model_b_wins: int
    ties: int
    both_bad: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "comparison.pair_stats",
            **self.__dict__,
            "model_a_win_rate": self.model_a_wins / self.votes,
            "model_b_win_rate": self.model_b_wins / self.votes,
        }


@dataclass(frozen=True)
class VoteTexts:
    """What a vote was about, kept where the tenant stores conversations."""

    prompt: str
    left_answer: str
    right_answer: str


@dataclass(frozen=True)
class Preference:
    """A decided vote as a preference pair: the prompt, the winning and the losing answer."""

    prompt: str
    preferred: str
    rejected: str


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class ComparisonStore:
    """Votes in one SQLite file (the server's database)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def record(
        self,
        tenant: str | None,
        left_model: str,
        right_model: str,
        prompt: str,
        vote: str,
        blind: bool,
        texts: VoteTexts | None = None,
    ) -> Comparison:
        """Store a vote (arguments already validated by the caller) and return it; ``texts`` are
        stored with it when given."""
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, not {vote!r}")
        comparison = Comparison(
            id=f"cmp-{uuid.uuid4().hex}",
            tenant=tenant,
            left_model=left_model,
            right_model=right_model,
            prompt_sha256=prompt_hash(prompt),
            vote=vote,
            blind=bool(blind),
            created_at=utc_now_iso(),
        )
        with self._connect() as db:
            db.execute(
                f"INSERT INTO comparisons ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    comparison.id,
                    tenant,
                    left_model,
                    right_model,
                    comparison.prompt_sha256,
                    vote,
                    int(comparison.blind),
                    comparison.created_at,
                ),
            )
            if texts is not None:
                db.execute(
                    "INSERT INTO comparison_texts (id, prompt, left_answer, right_answer) VALUES (?, ?, ?, ?)",
                    (comparison.id, texts.prompt, texts.left_answer, texts.right_answer),
                )
        return comparison

    def preferences(self, tenant: str, limit: int) -> builtins.list[Preference]:
        """The tenant's newest ``limit`` decided votes with stored texts, as preference pairs
        (ties, both-bad and votes between two identical answers carry no preference)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT c.vote, t.prompt, t.left_answer, t.right_answer FROM comparisons c "
                "JOIN comparison_texts t ON t.id = c.id WHERE c.tenant = ? AND c.vote IN ('left', 'right') "
                "AND t.left_answer != t.right_answer ORDER BY c.seq DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [
            Preference(prompt, left, right) if vote == "left" else Preference(prompt, right, left)
            for vote, prompt, left, right in rows
        ]

    def model_records(self, tenant: str | None, model_prefix: str) -> dict[str, tuple[int, int]]:
        """Per model id starting with ``model_prefix`` (e.g. ``acme/support@``): (wins, votes)
        over the tenant's votes in which it took part (ties and both-bad count as votes)."""
        where, params = ("tenant = ?", (tenant,)) if tenant is not None else ("1", ())
        pattern = model_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        records: dict[str, tuple[int, int]] = {}
        with self._connect() as db:
            for side, other in (("left", "right"), ("right", "left")):
                rows = db.execute(
                    f"SELECT {side}_model, SUM(vote = '{side}'), COUNT(*) FROM comparisons "
                    f"WHERE {where} AND {side}_model LIKE ? ESCAPE '\\' AND {side}_model != {other}_model "
                    f"GROUP BY {side}_model",
                    (*params, pattern),
                ).fetchall()
                for model, wins, votes in rows:
                    old_wins, old_votes = records.get(model, (0, 0))
                    records[model] = (old_wins + int(wins), old_votes + int(votes))
        return records

    def list(self, tenant: str | None, limit: int = 100) -> list[Comparison]:
        """The newest ``limit`` votes of ``tenant`` (of everyone with None), newest first."""
        where, params = self._scope(tenant)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM comparisons {where} ORDER BY seq DESC LIMIT ?", (*params, limit)
            ).fetchall()
        return [
            Comparison(id_, owner, left, right, sha256, vote, bool(blind), created_at)
            for id_, owner, left, right, sha256, vote, blind, created_at in rows
        ]

    def count(self, tenant: str) -> int:
        """How many votes ``tenant`` has recorded."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM comparisons WHERE tenant = ?", (tenant,)).fetchone()[0])

    def stats(self, tenant: str | None) -> builtins.list[PairStats]:  # ``list`` is the method above
        """Per-pair tallies, the most-voted pairs first."""
        where, params = self._scope(tenant)
        with self._connect() as db:
            rows = db.execute(f"SELECT left_model, right_model, vote FROM comparisons {where}", params).fetchall()
        tallies: dict[tuple[str, str], dict[str, int]] = {}
        for left, right, vote in rows:
            pair = (left, right) if left <= right else (right, left)
            tally = tallies.setdefault(pair, {"a": 0, "b": 0, "tie": 0, "both_bad": 0})
            if vote in ("tie", "both_bad"):
                tally[vote] += 1
            else:
                winner = left if vote == "left" else right
                tally["a" if winner == pair[0] else "b"] += 1
        stats = [
            PairStats(a, b, sum(t.values()), t["a"], t["b"], t["tie"], t["both_bad"]) for (a, b), t in tallies.items()
        ]
        return sorted(stats, key=lambda s: (-s.votes, s.model_a, s.model_b))

    @staticmethod
    def _scope(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
        if tenant is None:
            return "", ()
        return "WHERE tenant = ?", (tenant,)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.db_path, timeout=30)) as db, db:
            yield db
