"""The Gradio Blocks of swaplora's UI and the two ways to serve them.

Contract:

- Nothing under the mount answers without a key: :class:`ui.key_gate.KeyGate` sends browsers to
  its sign-in page and refuses other callers (also Gradio's own ``auth_dependency``).
- :func:`build_ui` makes the Blocks for a server at ``api_url``: a signed-in row, then exactly
  four tabs, **Chat**, **Train**, **Compare**, **Adapters**. The UI reaches the server only over
  HTTP (:mod:`ui.api_client`), so it runs in the server's process or anywhere else alike.
- :func:`mount_ui` mounts it on an ASGI (Starlette/FastAPI) app at ``path`` (``swaplora serve``
  mounts it at ``/ui``, pointing it at the server's own URL); :func:`run_ui` serves it alone
  (``swaplora ui --api-url URL``).
- Settings for a server on the internet: analytics off (also see :mod:`ui`), no share link, no
  flagging (Blocks have none; the chatbot's like/dislike is off), no run history kept in the
  browser (it would hold the API key typed into the sign-in box), no MCP server, client-side
  rendering only, uploads capped at ``max_file_size`` bytes and to the file types each upload box
  names, and no file from disk served but the uploads Gradio itself stored (``allowed_paths``
  empty, no ``gr.set_static_paths``, ``blocked_paths`` for whatever the caller names, e.g. the
  data directory). System fonts only: no request leaves for a font CDN.
- Under a prefix, ``/manifest.json`` and ``/favicon.ico`` of the host app redirect to the
  mounted copies (Gradio's page links them from the site root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from ui.adapters_tab import build_adapters_tab
from ui.chat_tab import build_chat_tab
from ui.compare_tab import build_compare_tab
from ui.event_check import EventCheck
from ui.key_gate import KeyGate
from ui.same_origin import SameOriginOnly
from ui.session import build_sign_in
from ui.train_tab import build_train_tab
from ui.ui_sessions import UiSessions

TITLE = "swaplora"
DEFAULT_MAX_FILE_SIZE = 512 * 1024 * 1024
ROOT_ASSETS = ("manifest.json", "favicon.ico")
CACHE_SECONDS = 3600
"""Uploaded files are deleted from Gradio's cache after an hour (checked hourly)."""


def theme() -> gr.themes.Base:
    system = [gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")]
    mono = [gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")]
    return gr.themes.Default(font=system, font_mono=mono)


def build_ui(api_url: str, sessions: UiSessions, prefix: str) -> gr.Blocks:
    """The Blocks for the server at ``api_url`` (its root, e.g. ``http://127.0.0.1:8000``), behind the
    :class:`ui.key_gate.KeyGate` mounted at ``prefix`` that keeps ``sessions``."""
    blocks: gr.Blocks
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as blocks:
        gr.Markdown(f"## {TITLE} — chat, train and compare LoRA adapters")
        session, acting = build_sign_in(blocks, api_url, sessions, prefix)
        catalog = gr.State(None)  # the /v1/adapters listing the model pickers follow
        build_chat_tab(session, catalog)
        build_train_tab(session, catalog, acting)
        build_compare_tab(session, catalog)
        build_adapters_tab(session, catalog, acting)
    # Every handler awaits the API; the server applies its own limits, so the UI queues nothing.
    blocks.queue(default_concurrency_limit=None)
    quiet_when_idle(blocks)
    return blocks


IDLE_POLL_S = 0.1
"""How often Gradio's queue looks for work while it has none (Gradio polls every 1 ms on Linux,
10 ms for progress: 6 % of a core on an idle server). A UI event waits at most this much longer."""


def quiet_when_idle(blocks: gr.Blocks) -> None:
    """Slow the idle polling of ``blocks``' event queue to :data:`IDLE_POLL_S` (Gradio has no
    public setting for it)."""
    queue = blocks._queue
    queue.sleep_when_free = max(queue.sleep_when_free, IDLE_POLL_S)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 2 * IDLE_POLL_S)


def mount_ui(
    app: Any,
    api_url: str,
    path: str = "/ui",
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    blocked_paths: list[Path] | None = None,
    sessions: UiSessions | None = None,
) -> Any:
    """Mount the UI on ``app`` at ``path`` behind a key gate keeping ``sessions``; returns ``app``."""
    if path.rstrip("/"):
        _redirect_root_assets(app, path.rstrip("/"))
    sessions = sessions or UiSessions()
    blocks = build_ui(api_url, sessions, path)
    # Added last is outermost: same-origin check, then the key gate, then the event check, then Gradio.
    app.add_middleware(EventCheck, prefix=path, blocks=blocks)
    app.add_middleware(KeyGate, api_url=api_url, prefix=path, sessions=sessions)
    app.add_middleware(SameOriginOnly, prefix=path)
    return gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        auth_dependency=KeyGate.user,
        footer_links=["api", "settings"],
        run_history=False,
        allowed_paths=[],
        blocked_paths=[str(Path(p).resolve()) for p in blocked_paths or []],
        show_error=True,
        max_file_size=max_file_size,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=theme(),
    )


def _redirect_root_assets(app: Any, prefix: str) -> None:
    """Gradio's page links ``/manifest.json`` and ``/favicon.ico`` from the site root even when
    mounted under a prefix; send the browser to the mounted copies instead of a 404."""
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    for name in ROOT_ASSETS:
        target = f"{prefix}/{name}"

        async def redirect(request: Any, target: str = target) -> RedirectResponse:
            return RedirectResponse(target, status_code=308)

        app.router.routes.append(Route(f"/{name}", redirect, methods=["GET", "HEAD"]))


def run_ui(api_url: str, host: str = "127.0.0.1", port: int = 7860, max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> None:
    """Serve the UI alone at ``http://host:port/`` until interrupted, talking to ``api_url``."""
    import uvicorn
    from starlette.applications import Starlette

    app = mount_ui(Starlette(), api_url, path="/", max_file_size=max_file_size)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=5)
