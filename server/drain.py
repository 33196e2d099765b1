"""Graceful shutdown: on SIGTERM the server drains, then exits with status 0.

Contract:

- :class:`Drain` wraps the ASGI app and counts what is in flight: every HTTP request from its
  first byte to the last byte of its response (a stream included) and every WebSocket session.
- :meth:`Drain.drain` (the first SIGTERM or SIGINT, through :class:`DrainingServer`) flips it to
  draining: from then on every new request (``/ready`` and ``/health`` included) gets 503 in
  OpenAI's error shape with code :data:`SHUTTING_DOWN`, ``Retry-After`` (:data:`RETRY_AFTER_S`)
  and ``Connection: close``; a new WebSocket is refused. The listening socket stays open all the
  while, so a load balancer sees 503s, not refused connections, and stops sending. What was
  already in flight runs to its end. The ``on_drain`` callbacks start at once (``serve`` stops
  the job runner there: running training jobs end ``failed`` with ``server_restarted``, see
  :mod:`server.jobs.runner`). ``drain`` returns once nothing is in flight and the callbacks have
  finished, or after ``seconds``, whichever comes first.
- :class:`DrainingServer` is a ``uvicorn.Server`` that does not close its socket on the first
  signal (uvicorn's own handling would): it drains, then sets ``should_exit``; uvicorn then
  closes the socket, cancels whatever is still open (only after the deadline), runs the app's
  lifespan shutdown and returns, and the process exits 0 (no signal is re-raised after the exit).
  A second SIGTERM or SIGINT exits at once with status 128 + the signal's number (143, 130),
  like a kill: no teardown; training workers die with the server (``PR_SET_PDEATHSIG``), and
  jobs left ``running`` are failed with ``server_restarted`` at the next start.
- sse_starlette ends its streams once uvicorn's ``should_exit`` is set, so only after the drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import APIError

log = logging.getLogger(__name__)

SHUTTING_DOWN = "server_shutting_down"
"""The ``error.code`` of the 503 a request gets during the drain."""
RETRY_AFTER_S = 5
"""``Retry-After`` of that 503: by then another instance (or this one, restarted) may answer."""
_WEBSOCKET_SERVICE_RESTART = 1012


class Drain:
    """ASGI middleware: counts requests in flight; refuses new ones once draining."""

    def __init__(self, app: ASGIApp, seconds: float, on_drain: Sequence[Callable[[], Awaitable[None]]] = ()) -> None:
        self.app = app
        self.seconds = seconds
        self.on_drain = list(on_drain)
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """HTTP requests and WebSocket sessions the app is serving now."""
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        if self.draining:
            await _refuse(scope, receive, send)
            return
        self._in_flight += 1
        self._idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drain(self) -> bool:
        """Refuse new requests from now on; return once everything in flight and every ``on_drain``
        callback has finished (True) or after ``seconds`` (False)."""
        self.draining = True
        started = time.monotonic()
        log.info("draining: %d request(s) in flight, up to %.0f s; new requests get 503", self._in_flight, self.seconds)
        # shielded: a callback cut short by the deadline still finishes (the lifespan awaits it too)
        callbacks = asyncio.shield(asyncio.gather(*(_logged(callback) for callback in self.on_drain)))
        try:
            await asyncio.wait_for(asyncio.gather(self._idle.wait(), callbacks), self.seconds)
        except TimeoutError:
            log.warning(
                "drain deadline of %.0f s passed with %d request(s) still in flight; exiting anyway",
                self.seconds,
                self._in_flight,
            )
            return False
        log.info("drained in %.1f s", time.monotonic() - started)
        return True


async def _logged(callback: Callable[[], Awaitable[None]]) -> None:
    try:
        await callback()
    except Exception:
        log.exception("a drain callback failed")


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": _WEBSOCKET_SERVICE_RESTART})
        return
    error = APIError(
        503,
        "The server is shutting down; retry shortly.",
        code=SHUTTING_DOWN,
        headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
    )
    await error.response()(scope, receive, send)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose first SIGTERM/SIGINT drains (:class:`Drain`) instead of closing
    the listening socket; the second exits at once."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread, which also runs the loop: only flags and a threadsafe call here.
        name = signal.Signals(sig).name
        if not self.started or self._loop is None:  # still starting: nothing can be in flight
            self.should_exit = True
            return
        if self.drain.draining or self.should_exit:
            # At once: no teardown (a daemon engine thread in torch code aborts the interpreter's
            # finalization); what a kill leaves, the next start-up sweeps (server.leftovers).
            log.warning(
                "%s again: exiting now with status %d, cutting %d request(s)", name, 128 + sig, self.drain.in_flight
            )
            logging.shutdown()
            os._exit(128 + sig)
        log.info("%s: draining before exit (a second signal exits at once)", name)
        self.drain.draining = True  # refuse from this instant, not from the loop's next turn
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.create_task(self._drain_then_exit(), name="swaplora-drain")

    async def _drain_then_exit(self) -> None:
        try:
            await self.drain.drain()
        finally:
            self.should_exit = True
