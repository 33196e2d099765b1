"""The **Chat** tab: talk to ``base`` or any adapter version, answers streamed token by token.

Contract:

- The model dropdown offers ``base``, each adapter (current version) and each of its versions,
  refreshed whenever ``catalog`` (the ``/v1/adapters`` listing) changes: sign-in, upload, rollback...
- The system prompt in use is shown: the tenant's (``GET /v1/tenants/{id}``, the tenant that owns
  the chosen adapter, else the signed-in tenant), or a note that the chat template's default
  applies when there is none. The conversation itself never sends a system message, so the
  server applies exactly that prompt.
- Temperature and max tokens go into the request; Clear empties the conversation.
- The answer streams into the chat as ``/v1/chat/completions`` streams it; an API error (unknown
  model, context too long, model loading) is shown as the server's message.
- Where the tenant's retrieval is on, the answer's sources (the ``citations`` of its finish
  chunk: file name and section, by their number in the prompt) are listed under the chat; they
  are not part of the conversation sent back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from ui.api_client import ApiError
from ui.session import Session, model_dropdown, require

NO_SYSTEM_PROMPT = "(none set: the model's chat template default applies)"
Messages = list[dict[str, str]]


def model_tenant(session: Session, model: str | None) -> str | None:
    """Whose settings apply to a chat with ``model``."""
    if model and "/" in model:
        return model.split("/", 1)[0]
    return session.tenant


async def system_prompt(session: Session | None, model: str | None) -> str:
    if session is None:
        return ""
    tenant = model_tenant(session, model)
    if tenant is None:
        return NO_SYSTEM_PROMPT
    async with session.client() as api:
        try:
            settings = await api.tenant(tenant)
        except ApiError as exc:
            return f"(could not read tenant {tenant}'s settings: {exc.text})"
    return settings.get("system_prompt") or NO_SYSTEM_PROMPT


def sources_text(citations: list[dict[str, Any]] | None) -> str:
    """The answer's sources as Markdown: one line per cited passage; empty without any."""
    if not citations:
        return ""
    lines = [f"- [{c['index']}] {c['filename']}: {c['heading'].rsplit(' > ', 1)[-1]}" for c in citations]
    return "**Sources**\n\n" + "\n".join(lines)


async def send(
    session: Session | None,
    model: str | None,
    temperature: float,
    max_tokens: float,
    message: str,
    history: Messages,
) -> AsyncIterator[tuple[str, Messages, Messages, str]]:
    """Stream the answer to ``message``; yields (new textbox value, chat shown, history, sources)."""
    session = require(session)
    if not model:
        raise gr.Error("Pick a model first.", print_exception=False)
    if not (message or "").strip():
        raise gr.Error("Type a message first.", print_exception=False)
    asked = [*history, {"role": "user", "content": message}]
    yield "", asked, history, ""
    answer, cited = "", None
    async with session.client() as api:
        async for _, piece, citations in api.stream_chat(model, asked, float(temperature), int(max_tokens)):
            answer += piece
            cited = citations if citations is not None else cited
            yield "", [*asked, {"role": "assistant", "content": answer}], history, ""
    done = [*asked, {"role": "assistant", "content": answer}]
    yield "", done, done, sources_text(cited)


def build_chat_tab(session: gr.State, catalog: gr.State) -> None:
    with gr.Tab("Chat"):
        with gr.Row():
            model = gr.Dropdown(label="Model", choices=[], interactive=True, allow_custom_value=True, scale=3)
            temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature", scale=2)
            max_tokens = gr.Slider(1, 2048, value=256, step=1, label="Max tokens", scale=2)
        prompt = gr.Textbox(label="System prompt in use", interactive=False, lines=2)
        chat = gr.Chatbot(label="Conversation", height=420, feedback_options=None, buttons=["copy"])
        sources = gr.Markdown("")
        history = gr.State([])
        with gr.Row():
            message = gr.Textbox(label="Message", placeholder="Ask something...", scale=5, lines=2)
            send_button = gr.Button("Send", variant="primary", scale=1)
            clear = gr.Button("Clear", scale=1)

    catalog.change(model_dropdown, [catalog, model], model, api_visibility="private")
    gr.on([model.change, session.change], system_prompt, [session, model], prompt, api_name="system_prompt")
    gr.on(
        [send_button.click, message.submit],
        send,
        inputs=[session, model, temperature, max_tokens, message, history],
        outputs=[message, chat, history, sources],
        api_name="chat",
    )
    clear.click(lambda: ([], [], ""), None, [chat, history, sources], api_name="clear_chat")
