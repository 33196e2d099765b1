"""``POST /v1/chat/completions``: OpenAI-compatible chat, streamed over SSE or returned whole.

Flow: :func:`~server.routes.completion_flow.preflight` (auth, validation, the tenant's rules and
limits, ``model`` resolved in the caller's tenant) -> tools and ``response_format`` compiled to a
grammar (a 400 naming what is unsupported) -> the prompt rendered with the base's chat template
(the tenant's ``system_prompt`` when the messages bring none; tools described to the model) ->
context budget -> the engine, ``n`` rows sharing one prefill. The adapter version is fixed when
the request starts, so publishing a new version never changes a reply in flight. Streaming ends
with ``data: [DONE]``; a client that goes away cancels its rows in the engine. Replies with tool
calls are sent whole at the end of their choice (the JSON of a call is only known complete then).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.chat_reply import ChatReply, ToolMode
from server.api.chat_request import ChatCompletionRequest
from server.api.sampling_fields import sampling_params
from server.engine.admission import Generation
from server.engine.grammar import Grammar, GrammarError
from server.engine.requests import Finished, TextDelta, TokenLogprob
from server.errors import bad_request
from server.prompt import ToolsInPrompt, refuse_what_cannot_fit, render_prompt
from server.routes.completion_flow import Preflight, collect, engine_error, preflight, settle, usage
from server.routes.retrieval import Citing, cite, retrieve
from server.tenancy.rate_limits import ReleaseAfter
from server.tool_calls import template_supports_tools, tools_prompt


def _tools(flight: Preflight, body: ChatCompletionRequest) -> tuple[ToolsInPrompt | None, ToolMode]:
    """How the request's tools go into the prompt, and how its reply is read."""
    if not body.tools or body.tool_choice == "none":
        return None, "none"
    assert flight.services.base is not None
    native = template_supports_tools(flight.services.base.tokenizer)
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools]
    if body.calls_tool is True and body.tool_choice in (None, "auto"):
        if not native:
            raise bad_request(
                "This base model's chat template has no tool support, so tool_choice 'auto' (the default when "
                "tools are given) cannot be honoured; use tool_choice 'required' or name a function.",
                param="tool_choice",
                code="tool_choice_unsupported",
            )
        return ToolsInPrompt(tools, native=True), "auto"
    name = body.calls_tool if isinstance(body.calls_tool, str) else None
    return ToolsInPrompt(tools, native, "" if native else tools_prompt(tools, name)), "forced"


def _grammar(flight: Preflight, body: ChatCompletionRequest, mode: ToolMode) -> Grammar | None:
    """The grammar the reply must follow (a forced tool call, or the response_format), if any."""
    grammars = flight.services.grammars
    assert grammars is not None  # set with the engine
    try:
        if mode == "forced":
            name = body.calls_tool if isinstance(body.calls_tool, str) else None
            return grammars.tool_call([t.model_dump(exclude_none=True) for t in body.tools or ()], name)
        fmt = body.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return grammars.json_object()
        return grammars.json_schema(fmt.json_schema.schema_)
    except GrammarError as exc:
        raise bad_request(exc.message, param=exc.param, code="unsupported_schema") from None


async def chat_completions(request: Request) -> Response | ReleaseAfter:
    flight, body = await preflight(request, ChatCompletionRequest)
    services = flight.services
    assert services.base is not None and services.grammars is not None
    tokenizer = services.base.tokenizer
    messages = list(body.messages)
    with flight.release_on_error():
        tools, mode = _tools(flight, body)
        grammar = await run_in_threadpool(_grammar, flight, body, mode)
        await run_in_threadpool(refuse_what_cannot_fit, tokenizer, [m.text() for m in messages], flight.context_limit)
        system_prompt = flight.settings.system_prompt if flight.settings else None
        prompt_messages, citing = await run_in_threadpool(retrieve, flight, messages)
        prompt_ids = await run_in_threadpool(render_prompt, tokenizer, prompt_messages, system_prompt, tools)
        flight.admission.afford(len(prompt_ids))
        max_tokens = flight.max_tokens(body, len(prompt_ids))
        params = sampling_params(body, max_tokens, len(tokenizer), body.logprobs_count)
        generation = flight.start(prompt_ids, params, body.n, grammar)
    reply = ChatReply(int(time.time()), flight.served_model, services.grammars.token_bytes, mode, body.logprobs)
    answer: list[str] = []  # choice 0's text, for the served log

    def finish() -> None:
        settle(flight.admission, [generation], len(prompt_ids))
        said = [m.model_dump(exclude_none=True) for m in messages] if flight.stores_texts else None
        flight.record(reply.id, [generation], {"messages": said, "answer": "".join(answer)} if said else None)

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(generation, reply, body.n, include_usage, answer, citing)
        return ReleaseAfter(EventSourceResponse(events, ping=15), finish)
    try:
        results = await collect(request, generation, body.n)
        reply.citations = await cite(citing)
        answer.append(results[0].text)
        ends = [r.finished for r in results if r.finished is not None]
        choices = [reply.choice(i, r.text, r.logprobs, end) for i, (r, end) in enumerate(zip(results, ends))]
        return JSONResponse(reply.body(choices, usage([generation])))
    finally:
        finish()


async def _stream(
    generation: Generation,
    reply: ChatReply,
    n: int,
    include_usage: bool,
    answer: list[str],
    citing: Citing | None,
) -> AsyncIterator[dict[str, str]]:
    """SSE events: a role chunk per choice, content chunks as text comes (a tool reply at its
    end), a finish chunk per choice (with the citations, computed at the first), the usage chunk
    if asked, ``[DONE]``."""
    held: dict[int, list[str]] = {i: [] for i in range(n)}
    held_logprobs: dict[int, list[TokenLogprob]] = {i: [] for i in range(n)}
    for index in range(n):
        yield _data(reply.chunk(index, {"role": "assistant", "content": ""}))
    async for event in generation:
        if isinstance(event, TextDelta):
            if event.index == 0:
                answer.append(event.text)
            if reply.tools == "none":
                yield _data(reply.chunk(event.index, {"content": event.text}, logprobs=event.logprobs))
            else:
                held[event.index].append(event.text)
                held_logprobs[event.index].extend(event.logprobs)
            continue
        if event.reason == "error":
            yield _data(engine_error(event).body())
            return
        if citing is not None and reply.citations is None:
            reply.citations = await cite(citing)
        yield _data(_finish_chunk(reply, event, "".join(held[event.index]), held_logprobs[event.index]))
    if include_usage:
        yield _data(reply.usage_chunk(usage([generation])))
    yield {"data": "[DONE]"}


def _finish_chunk(reply: ChatReply, end: Finished, held: str, held_logprobs: list[TokenLogprob]) -> dict[str, Any]:
    """A choice's last chunk: its finish reason, and its held text or tool calls (tool modes)."""
    logprobs = held_logprobs + list(end.logprobs)
    if reply.tools == "none":
        return reply.chunk(end.index, {}, end.reason, logprobs)
    message, reason = reply.message(held, end)
    delta = {k: v for k, v in message.items() if k in ("content", "tool_calls")}
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    return reply.chunk(end.index, delta, reason, logprobs)


def _data(payload: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(payload)}


routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
