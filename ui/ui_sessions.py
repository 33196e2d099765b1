"""Signed-in UI sessions: an opaque cookie token for the API key it stands for, in memory only.

Contract:

- :meth:`UiSessions.open` stores a key under a new random token (what the browser's cookie
  holds; the key itself never leaves the server) and returns the token. A session lives
  :attr:`UiSessions.lifetime_s` seconds from sign-in; :meth:`UiSessions.close` ends it sooner.
- :meth:`UiSessions.get` is the live :class:`UiPass` for a token, or None (unknown, expired).
- Bounded: at most ``max_sessions`` sessions (the oldest go first) and the same number of
  remembered key checks. Nothing is written to disk: a restart signs everyone out.
- :meth:`UiSessions.checked` / :meth:`UiSessions.remember` cache the server's verdict on a key
  for ``recheck_s`` seconds, so a page's dozens of requests cost one ``GET /v1/me``, and a key
  revoked on the server stops working in the UI within ``recheck_s``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class UiPass:
    """What a signed-in browser (or a client sending the key itself) acts with."""

    key: str
    user: str
    """``admin`` or the key's tenant id: shown in the page, never a secret."""


class UiSessions:
    """See the module docstring."""

    def __init__(
        self,
        lifetime_s: float = 12 * 3600.0,
        recheck_s: float = 30.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime_s = lifetime_s
        self.recheck_s = recheck_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[UiPass, float]] = OrderedDict()
        self._checks: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, ui_pass: UiPass) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (ui_pass, self._clock() + self.lifetime_s)
            _trim(self._sessions, self.max_sessions)
        self.remember(ui_pass)
        return token

    def get(self, token: str | None) -> UiPass | None:
        if not token:
            return None
        with self._lock:
            held = self._sessions.get(token)
            if held is None:
                return None
            if held[1] <= self._clock():
                del self._sessions[token]
                return None
            return held[0]

    def close(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def forget_key(self, key: str) -> None:
        """The server refused ``key``: end every session that holds it and its cached check."""
        with self._lock:
            for token in [t for t, (p, _) in self._sessions.items() if p.key == key]:
                del self._sessions[token]
            self._checks.pop(_digest(key), None)

    def checked(self, key: str) -> UiPass | None:
        """The key's pass when the server accepted it within the last ``recheck_s`` seconds."""
        with self._lock:
            held = self._checks.get(_digest(key))
        if held is None or held[1] + self.recheck_s <= self._clock():
            return None
        return UiPass(key=key, user=held[0])

    def remember(self, ui_pass: UiPass) -> None:
        with self._lock:
            self._checks[_digest(ui_pass.key)] = (ui_pass.user, self._clock())
            self._checks.move_to_end(_digest(ui_pass.key))
            _trim(self._checks, self.max_sessions)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _trim(held: OrderedDict, most: int) -> None:  # type: ignore[type-arg]
    while len(held) > most:
        held.popitem(last=False)
