"""The **Adapters** tab: every adapter the key may see, its versions with their manifest metrics,
the current version, rollback, deletion and upload, and the rollout panel (each version's
scoreboard next to the traffic split, a split editor and a promote button: :mod:`ui.rollout_view`).

Contract:

- ``catalog`` (a ``gr.State``) holds the ``GET /v1/adapters`` listing; this tab loads it at sign-in
  and after every change it makes, and the Chat and Compare pickers follow it.
- Rollback makes an existing version current (``POST .../rollback``); deleting a version or a
  whole adapter needs the confirmation box ticked. Upload sends ``adapter_config.json`` and
  ``adapter_model.safetensors`` (``POST /v1/adapters``; the admin uploads for the tenant picked
  in "Act for tenant") and the new version becomes current. Every refusal (unknown adapter,
  pickle weights, wrong shapes, too large) is shown as the server's own message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gradio as gr

from ui.rollout_view import STATS_HEADERS, load_stats, promote, set_split
from ui.session import Session, load_catalog, require

ADAPTER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9-]{0,62}$")
UPLOAD_TYPES = [".json", ".safetensors"]
OVERVIEW_HEADERS = ["Adapter", "Tenant", "Current version", "Versions", "Rank", "Alpha", "Updated"]
VERSION_HEADERS = ["Version", "Current", "Created", "Source", "Rank", "Alpha", "Metrics", "Details"]


def _metrics(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


def overview(adapters: list[dict[str, Any]] | None) -> list[list[Any]]:
    return [
        [a["id"], a["tenant"], a["current_version"], len(a.get("versions", [])), a["rank"], a["alpha"], a["created_at"]]
        for a in sorted(adapters or [], key=lambda a: a["id"])
    ]


def versions_table(adapter: dict[str, Any] | None) -> list[list[Any]]:
    if not adapter:
        return []
    rows = []
    for v in sorted(adapter.get("versions", []), key=lambda v: v["version"], reverse=True):
        extra = {k: val for k, val in v.get("extra", {}).items() if not isinstance(val, (dict, list))}
        rows.append(
            [
                v["version"],
                "yes" if v["version"] == adapter["current_version"] else "",
                v["created_at"],
                v["source"],
                v["rank"],
                v["alpha"],
                _metrics(v.get("metrics", {})),
                json.dumps(extra)[:300],
            ]
        )
    return rows


def _chosen(adapter_id: str | None) -> str:
    if not adapter_id or not ADAPTER_ID.match(adapter_id):
        raise gr.Error("Pick an adapter first.", print_exception=False)
    return adapter_id


def _version(value: float | None) -> int:
    if value is None or value < 1 or value != int(value):
        raise gr.Error("Enter a version number (1, 2, ...).", print_exception=False)
    return int(value)


def show_adapter(catalog: list[dict[str, Any]] | None, adapter_id: str | None) -> list[list[Any]]:
    adapter = next((a for a in catalog or [] if a["id"] == adapter_id), None)
    return versions_table(adapter)


async def rollback(session: Session | None, adapter_id: str | None, version: float | None) -> Any:
    session = require(session)
    async with session.client() as api:
        result = await api.rollback(_chosen(adapter_id), _version(version))
        gr.Info(f"{result['id']} now serves version {result['current_version']}.")
        return await api.adapters()


async def delete(
    session: Session | None, adapter_id: str | None, version: float | None, whole: bool, confirmed: bool
) -> tuple[Any, bool]:
    """Delete one version or the whole adapter; returns the new catalog and an unticked confirmation."""
    session = require(session)
    adapter_id = _chosen(adapter_id)
    if not confirmed:
        raise gr.Error("Tick 'Yes, delete' to confirm.", print_exception=False)
    async with session.client() as api:
        if whole:
            await api.delete_adapter(adapter_id)
            gr.Info(f"Deleted {adapter_id} and all its versions.")
        else:
            number = _version(version)
            await api.delete_version(adapter_id, number)
            gr.Info(f"Deleted {adapter_id}@{number}.")
        return await api.adapters(), False


async def upload(session: Session | None, acting: str | None, name: str, files: list[str] | None) -> Any:
    session = require(session)
    if not (name or "").strip():
        raise gr.Error("Name the adapter (a-z, 0-9 and '-').", print_exception=False)
    paths = [Path(f) for f in files or []]
    if not paths:
        raise gr.Error("Add adapter_config.json and adapter_model.safetensors.", print_exception=False)
    async with session.client() as api:
        result = await api.upload_adapter(name.strip(), paths, acting if session.is_admin else None)
        gr.Info(f"Published {result['model']}; it is served now.")
        return await api.adapters()


def build_adapters_tab(session: gr.State, catalog: gr.State, acting: gr.Dropdown) -> None:
    with gr.Tab("Adapters"):
        refresh = gr.Button("Refresh")
        table = gr.Dataframe(headers=OVERVIEW_HEADERS, label="Adapters", interactive=False, value=[])
        picked = gr.Dropdown(label="Adapter", choices=[], interactive=True, allow_custom_value=True)
        versions = gr.Dataframe(
            headers=VERSION_HEADERS, label="Versions (manifest metrics)", interactive=False, value=[], wrap=True
        )
        with gr.Row(equal_height=True):
            version = gr.Number(label="Version", value=1, precision=0, minimum=1)
            rollback_button = gr.Button("Make this version current")
            confirm = gr.Checkbox(label="Yes, delete", value=False)
            delete_version = gr.Button("Delete this version", variant="stop")
            delete_adapter = gr.Button("Delete the whole adapter", variant="stop")
        with gr.Accordion("Rollout: traffic split and scoreboard", open=True):
            stats = gr.Dataframe(headers=STATS_HEADERS, label="Versions in service", interactive=False, value=[])
            with gr.Row(equal_height=True):
                split = gr.Textbox(label="Traffic split (version: percent, ...)", placeholder="1: 90, 2: 10")
                split_button = gr.Button("Set split")
                promote_button = gr.Button("Promote this version (100 %)", variant="primary")
        with gr.Accordion("Upload an adapter (PEFT LoRA, safetensors only)", open=False):
            name = gr.Textbox(label="Adapter name", placeholder="support")
            files = gr.File(
                label="adapter_config.json and adapter_model.safetensors",
                file_count="multiple",
                file_types=UPLOAD_TYPES,
                type="filepath",
            )
            upload_button = gr.Button("Upload", variant="primary")

    def pickers(adapters: list[dict[str, Any]] | None, current: str | None) -> tuple[Any, Any]:
        ids = [a["id"] for a in adapters or []]
        return overview(adapters), gr.Dropdown(choices=ids, value=current if current in ids else next(iter(ids), None))

    session.change(load_catalog, session, catalog, api_name="list_adapters")
    refresh.click(load_catalog, session, catalog, api_visibility="private")
    catalog.change(pickers, [catalog, picked], [table, picked], api_visibility="private")
    gr.on([picked.change, catalog.change], show_adapter, [catalog, picked], versions, api_visibility="private")
    gr.on([picked.change, catalog.change], load_stats, [session, picked], [stats, split], api_name="adapter_stats")
    split_button.click(set_split, [session, picked, split], catalog, api_name="set_traffic")
    promote_button.click(promote, [session, picked, version], catalog, api_name="promote")
    rollback_button.click(rollback, [session, picked, version], catalog, api_name="rollback")
    delete_version.click(
        delete, [session, picked, version, gr.State(False), confirm], [catalog, confirm], api_name="delete_version"
    )
    delete_adapter.click(
        delete, [session, picked, version, gr.State(True), confirm], [catalog, confirm], api_name="delete_adapter"
    )
    upload_button.click(upload, [session, acting, name, files], catalog, api_name="upload_adapter")
