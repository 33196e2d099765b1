"""Who is signed in: the API key and what the server says it belongs to.

Contract:

- A :class:`Session` lives only in the browser session's ``gr.State`` (server memory for that
  one page session): never written to disk, a cookie or the page. The key is typed once, on the
  sign-in page of :mod:`ui.key_gate`, whose cookie holds an opaque token, not the key.
- :func:`sign_in` asks the server (``GET /v1/me``) whom the key belongs to; a bad key is the
  server's own 401 message. The admin (who sees every tenant) also gets the tenant list, to act
  for one tenant where the API needs it (uploads, training).
- :func:`require` turns "not signed in" into a readable error for every handler.
- :func:`model_choices` lists what the key may chat with: ``base``, every adapter (its current
  version) and each of its versions, as ``(label, model id)`` pairs; :func:`model_dropdown` puts
  them in a dropdown.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.api_client import ApiClient
from ui.key_gate import pass_for
from ui.ui_sessions import UiSessions


@dataclass(frozen=True)
class Session:
    api_url: str
    key: str
    tenant: str | None
    """The key's tenant; None for the admin."""
    is_admin: bool
    tenants: tuple[str, ...] = ()
    """Every tenant id (admin only)."""

    def client(self) -> ApiClient:
        return ApiClient(self.api_url, self.key)

    def describe(self) -> str:
        if self.is_admin:
            return f"Signed in as **admin** ({len(self.tenants)} tenants)."
        return f"Signed in as tenant **{self.tenant}**."


def require(session: Session | None) -> Session:
    if session is None:
        raise gr.Error("Sign in with your API key first.", print_exception=False)
    return session


async def sign_in(api_url: str, key: str) -> Session:
    """The session for ``key``, or the server's error (e.g. 'Incorrect API key provided.')."""
    key = (key or "").strip()
    if not key:
        raise gr.Error("Enter an API key to sign in.", print_exception=False)
    async with ApiClient(api_url, key) as api:
        me = await api.me()
        tenants = tuple(t["id"] for t in await api.tenants()) if me["is_admin"] else ()
    return Session(api_url=api_url, key=key, tenant=me["tenant"], is_admin=bool(me["is_admin"]), tenants=tenants)


def model_choices(adapters: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``base`` first, then each adapter at its current version followed by every version."""
    choices = [("base (no adapter)", "base")]
    for adapter in sorted(adapters, key=lambda a: a["id"]):
        current = adapter["current_version"]
        choices.append((f"{adapter['id']} (current: v{current})", adapter["id"]))
        for version in sorted(adapter.get("versions", []), key=lambda v: v["version"]):
            marker = " (current)" if version["version"] == current else ""
            choices.append((f"{version['model']}{marker}", version["model"]))
    return choices


def model_dropdown(adapters: list[dict[str, Any]] | None, current: str | None) -> Any:
    """A model dropdown's choices for the adapters in the catalog, keeping the pick when it still exists."""
    if adapters is None:
        return gr.Dropdown(choices=[], value=None)
    choices = model_choices(adapters)
    values = [value for _, value in choices]
    return gr.Dropdown(choices=choices, value=current if current in values else "base")


async def load_catalog(session: Session | None) -> list[dict[str, Any]] | None:
    """The ``/v1/adapters`` listing (every version's manifest) for the shared ``catalog`` state."""
    if session is None:
        return None
    async with session.client() as api:
        return await api.adapters()


def build_sign_in(blocks: gr.Blocks, api_url: str, sessions: UiSessions, prefix: str) -> tuple[gr.State, gr.Dropdown]:
    """Who is signed in, a sign-out button and the admin's "act for tenant" dropdown; returns the
    session state and the dropdown. The key comes from the :class:`ui.key_gate.KeyGate` (holding
    ``sessions``, mounted at ``prefix``) that let the page's request through (its sign-in cookie,
    or a client's bearer key) when the page loads (or a client calls ``/sign_in``)."""
    session = gr.State(None)
    with gr.Row(equal_height=True):
        status = gr.Markdown("Not signed in.")
        acting = gr.Dropdown(
            label="Act for tenant", choices=[], visible=False, scale=2, interactive=True, allow_custom_value=True
        )
        sign_out = html.escape(prefix.rstrip("/") + "/sign-out")
        gr.HTML(
            f'<form method="post" action="{sign_out}">'
            '<button type="submit" class="lg secondary">Sign out</button></form>'
        )

    async def on_load(request: gr.Request) -> tuple[Session, str, Any]:
        ui_pass = pass_for(sessions, request.headers, request.cookies)
        if ui_pass is None:  # the gate let nobody through without a key: a session that just expired
            raise gr.Error("Your sign-in has expired: reload the page.", print_exception=False)
        new = await sign_in(api_url, ui_pass.key)
        choices = list(new.tenants)
        dropdown = gr.Dropdown(choices=choices, value=choices[0] if choices else None, visible=new.is_admin)
        return new, new.describe(), dropdown

    blocks.load(on_load, outputs=[session, status, acting], api_name="sign_in")
    return session, acting
