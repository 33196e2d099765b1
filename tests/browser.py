"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright, plus a tiny
static web server for pages on another origin, and screenshots kept under ``test-artifacts/``.

Use it from a test module with ``from tests.browser import browser  # noqa: F401`` (the fixture)
and the helpers below. Nothing is downloaded: Playwright runs the system browser
(``executable_path``), never one of its own builds; ``make test`` installs Chromium through the
``browser`` target. Without Chromium the browser tests skip locally and fail under ``CI=true``,
so CI cannot pass by testing nothing.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""``--user-data-dir`` is added by Playwright from the temp dir handed to ``launch_persistent_context``."""
ARTIFACTS = ROOT / "test-artifacts"


def require_chromium() -> None:
    """Skip (fail under CI) unless the system Chromium and the playwright package are present."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (make browser, or: apt-get install -y chromium)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "the playwright package is missing (pip install -e '.[test]')"
    if missing and os.environ.get("CI"):
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)


@contextmanager
def chromium(user_data_dir: Path, **context_options: object) -> Iterator[object]:
    """A fresh headless Chromium profile in ``user_data_dir``; yields a Playwright BrowserContext."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            **context_options,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """A BrowserContext (desktop viewport) for one test, in its own throw-away profile."""
    require_chromium()
    with chromium(tmp_path / "chromium-profile", viewport={"width": 1200, "height": 800}) as context:
        context.set_default_timeout(120_000)
        yield context


def screenshot(page: object, name: str) -> Path:
    """Save a PNG of ``page`` as ``test-artifacts/<name>.png`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_site(directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free port in a thread; yields its origin (no slash)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
