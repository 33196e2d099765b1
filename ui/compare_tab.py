"""The **Compare** tab: one prompt to two models, both answers streamed side by side at once.

Contract:

- Two model pickers (``base``, an adapter, or a given version, as in Chat), a prompt, temperature
  and max tokens. Both ``/v1/chat/completions`` streams run concurrently; each side shows its
  text as it arrives.
- Blind mode flips a coin to swap the sides and hides which model is which until the vote.
- A vote (left better, right better, tie, both bad) is recorded once per round by
  ``POST /v1/comparisons`` with the model versions that actually answered (the ``model`` of the
  stream) and both answers (kept by the server only where the tenant stores conversations, for
  the preference export), then the models are revealed and the win-rate table
  (``/v1/comparisons/stats``) is reloaded. For the admin the vote belongs to the tenant that owns
  the compared adapters.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from ui.api_client import ApiClient
from ui.session import Session, model_dropdown, require

VOTES = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"}
STATS_HEADERS = ["Model A", "Model B", "Votes", "A wins", "B wins", "Ties", "Both bad", "A win rate", "B win rate"]
Round = dict[str, Any]


async def _merge(
    api: ApiClient, models: tuple[str, str], prompt: str, temperature: float, max_tokens: int
) -> AsyncIterator[tuple[int, str, str]]:
    """``(side, served model, delta)`` from two concurrent streams, in arrival order."""
    queue: asyncio.Queue[tuple[int, str, str] | Exception | None] = asyncio.Queue()
    messages = [{"role": "user", "content": prompt}]

    async def pump(side: int) -> None:
        try:
            async for served, delta, _ in api.stream_chat(models[side], messages, temperature, max_tokens):
                await queue.put((side, served, delta))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)
        else:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(side)) for side in (0, 1)]
    try:
        finished = 0
        while finished < 2:
            item = await queue.get()
            if item is None:
                finished += 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _labels(round_: Round, reveal: bool) -> tuple[str, str]:
    if round_["blind"] and not reveal:
        return "**Left: model A** (hidden until you vote)", "**Right: model B** (hidden until you vote)"
    return f"**Left: {round_['left']}**", f"**Right: {round_['right']}**"


async def compare(
    session: Session | None,
    left: str | None,
    right: str | None,
    blind: bool,
    prompt: str,
    temperature: float,
    max_tokens: float,
) -> AsyncIterator[tuple[str, str, str, str, Round]]:
    """Yields (left label, left text, right label, right text, round) while both answers stream."""
    session = require(session)
    if not left or not right:
        raise gr.Error("Pick a model for each side.", print_exception=False)
    if left == right:
        raise gr.Error("Pick two different models to compare.", print_exception=False)
    if not (prompt or "").strip():
        raise gr.Error("Type a prompt first.", print_exception=False)
    models = (right, left) if blind and secrets.randbelow(2) else (left, right)
    round_: Round = {"prompt": prompt, "left": models[0], "right": models[1], "blind": bool(blind), "voted": False}
    texts = ["", ""]
    labels = _labels(round_, reveal=False)
    async with session.client() as api:
        async for side, served, delta in _merge(api, models, prompt, float(temperature), int(max_tokens)):
            texts[side] += delta
            round_["left" if side == 0 else "right"] = served
            round_["answers"] = list(texts)
            yield labels[0], texts[0], labels[1], texts[1], round_


def vote_tenant(session: Session, round_: Round) -> str | None:
    """The tenant the admin's vote belongs to: the one owning the compared adapters, if one does."""
    if not session.is_admin:
        return None
    owners = {m.split("/", 1)[0] for m in (round_["left"], round_["right"]) if "/" in m}
    return owners.pop() if len(owners) == 1 else None


async def vote(session: Session | None, round_: Round | None, verdict: str) -> tuple[str, str, Round, Any]:
    """Record ``verdict`` for the round; returns revealed labels, the round and the new stats table."""
    session = require(session)
    if not round_:
        raise gr.Error("Run a comparison first, then vote.", print_exception=False)
    if round_["voted"]:
        raise gr.Error("This round already has your vote; run a new comparison.", print_exception=False)
    if verdict not in VOTES:
        raise gr.Error(f"Unknown vote {verdict!r}.", print_exception=False)
    body = {
        "left_model": round_["left"],
        "right_model": round_["right"],
        "prompt": round_["prompt"],
        "vote": verdict,
        "blind": round_["blind"],
    }
    if "answers" in round_:
        body["left_answer"], body["right_answer"] = round_["answers"]
    tenant = vote_tenant(session, round_)
    if tenant:
        body["tenant"] = tenant
    async with session.client() as api:
        await api.record_vote(body)
        stats = await api.comparison_stats()
    round_ = {**round_, "voted": True}
    left_label, right_label = _labels(round_, reveal=True)
    gr.Info(f"Vote recorded: {VOTES[verdict].lower()}.")
    return left_label, right_label, round_, stats_table(stats)


def stats_table(stats: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            s["model_a"],
            s["model_b"],
            s["votes"],
            s["model_a_wins"],
            s["model_b_wins"],
            s["ties"],
            s["both_bad"],
            f"{s['model_a_win_rate']:.0%}",
            f"{s['model_b_win_rate']:.0%}",
        ]
        for s in stats
    ]


async def load_stats(session: Session | None) -> list[list[Any]]:
    if session is None:
        return []
    async with session.client() as api:
        return stats_table(await api.comparison_stats())


def other_model(adapters: list[dict[str, Any]] | None, current: str | None) -> Any:
    """The right-hand picker: like the left one, but starting on the first adapter rather than base."""
    dropdown = model_dropdown(adapters, current)
    if current is None and adapters:
        dropdown = model_dropdown(adapters, sorted(a["id"] for a in adapters)[0])
    return dropdown


def build_compare_tab(session: gr.State, catalog: gr.State) -> None:
    with gr.Tab("Compare"):
        with gr.Row():
            left_model = gr.Dropdown(label="Left model", choices=[], interactive=True, allow_custom_value=True)
            right_model = gr.Dropdown(label="Right model", choices=[], interactive=True, allow_custom_value=True)
            blind = gr.Checkbox(label="Blind (hide and shuffle the sides until you vote)", value=True)
        with gr.Row():
            temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature")
            max_tokens = gr.Slider(1, 2048, value=128, step=1, label="Max tokens")
        prompt = gr.Textbox(label="Prompt", lines=2, placeholder="One question for both models")
        run = gr.Button("Compare", variant="primary")
        round_state = gr.State(None)
        with gr.Row():
            with gr.Column():
                left_label = gr.Markdown("**Left**")
                left_text = gr.Textbox(label="Left answer", lines=8, interactive=False, show_label=False)
            with gr.Column():
                right_label = gr.Markdown("**Right**")
                right_text = gr.Textbox(label="Right answer", lines=8, interactive=False, show_label=False)
        with gr.Row():
            buttons = {verdict: gr.Button(text) for verdict, text in VOTES.items()}
        stats = gr.Dataframe(headers=STATS_HEADERS, label="Win rates per pair", interactive=False, value=[])

    catalog.change(model_dropdown, [catalog, left_model], left_model, api_visibility="private")
    catalog.change(other_model, [catalog, right_model], right_model, api_visibility="private")
    gr.on(
        [run.click, prompt.submit],
        compare,
        inputs=[session, left_model, right_model, blind, prompt, temperature, max_tokens],
        outputs=[left_label, left_text, right_label, right_text, round_state],
        api_name="compare",
    )
    for verdict, button in buttons.items():
        verdict_box = gr.State(verdict)
        button.click(
            vote,
            [session, round_state, verdict_box],
            [left_label, right_label, round_state, stats],
            api_name=f"vote_{verdict}",
        )
    session.change(load_stats, session, stats, api_name="comparison_stats")
