"""``POST /v1/completions``: legacy text completions (no chat template), for evaluation harnesses
and older clients; same adapters, same keys, same limits as chat.

Flow: :func:`~server.routes.completion_flow.preflight` -> each prompt tokenized (or its token ids
checked against the vocabulary) and sized against the context -> one engine request per prompt,
``n`` rows each -> choices indexed ``prompt * n + choice``. ``echo`` puts the prompt before the
completion; with ``logprobs`` the prompt's own tokens are scored too (``max_tokens: 0`` scores
the prompt alone, as loglikelihood evaluations do); that combination is not streamed (the
prompt's logprobs are known only when its prefill ends). The tenant's system prompt does not
apply: there is no conversation here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.completion_request import CompletionRequest
from server.api.logprobs import TokenBytes, completion_logprobs, token_text
from server.api.sampling_fields import sampling_params
from server.engine.admission import Generation
from server.engine.requests import Event, TextDelta, TokenLogprob
from server.errors import bad_request
from server.prompt import refuse_what_cannot_fit
from server.routes.completion_flow import ChoiceResult, Preflight, collect, engine_error, preflight, settle, usage
from server.tenancy.rate_limits import ReleaseAfter


def _prompt_ids(flight: Preflight, prompt: str | list[int]) -> tuple[list[int], str]:
    """A prompt's token ids and its text."""
    assert flight.services.base is not None
    tokenizer = flight.services.base.tokenizer
    if isinstance(prompt, str):
        refuse_what_cannot_fit(tokenizer, [prompt], flight.context_limit, param="prompt")
        ids: list[int] = tokenizer(prompt, add_special_tokens=True).input_ids
        return ids, prompt
    if len(prompt) > flight.context_limit or any(not 0 <= t < len(tokenizer) for t in prompt):
        raise bad_request(
            f"A token-id prompt holds ids 0 to {len(tokenizer) - 1}, at most {flight.context_limit} of them.",
            param="prompt",
        )
    text = tokenizer.decode(prompt)
    assert isinstance(text, str)
    return list(prompt), text


async def completions(request: Request) -> Response | ReleaseAfter:
    flight, body = await preflight(request, CompletionRequest)
    services = flight.services
    assert services.base is not None and services.grammars is not None
    vocab = len(services.base.tokenizer)
    scored = body.logprobs if body.echo and body.logprobs is not None else None
    generations: list[Generation] = []
    with flight.release_on_error():
        if body.stream and scored is not None:
            raise bad_request("echo with logprobs is not streamed; send it with stream: false.", param="stream")
        prompts = [await run_in_threadpool(_prompt_ids, flight, prompt) for prompt in body.prompts]
        flight.admission.afford(sum(len(ids) for ids, _ in prompts))
        for ids, _ in prompts:
            params = sampling_params(
                body, flight.max_tokens(body, len(ids), prompt_param="prompt"), vocab, body.logprobs
            )
            generations.append(flight.start(ids, replace(params, prompt_logprobs=scored), body.n))
    prompt_len = sum(len(ids) for ids, _ in prompts)
    reply = _Reply(flight.served_model, services.grammars.token_bytes, body, [text for _, text in prompts])

    def finish() -> None:
        settle(flight.admission, generations, prompt_len)
        flight.record(reply.id, generations, None)

    if body.stream:
        return ReleaseAfter(EventSourceResponse(_stream(generations, reply), ping=15), finish)
    try:
        per_prompt = await asyncio.gather(*(collect(request, g, body.n) for g in generations))
        results = [result for prompt_results in per_prompt for result in prompt_results]
        return JSONResponse(reply.body(results, generations))
    finally:
        finish()


class _Reply:
    """The response body and chunks of one completions request."""

    def __init__(self, model: str, token_bytes: TokenBytes, body: CompletionRequest, texts: list[str]) -> None:
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.token_bytes = token_bytes
        self.request = body
        self.texts = texts

    def _logprobs(self, entries: list[TokenLogprob], offset: int) -> dict[str, Any] | None:
        if self.request.logprobs is None:
            return None
        return completion_logprobs(entries, self.token_bytes, offset)

    def body_choice(self, index: int, result: ChoiceResult, scored: tuple[TokenLogprob, ...]) -> dict[str, Any]:
        assert result.finished is not None
        prompt_text = self.texts[index // self.request.n]
        text = prompt_text + result.text if self.request.echo else result.text
        entries = [*scored, *result.logprobs] if self.request.echo else result.logprobs
        logprobs = self._logprobs(entries, 0 if self.request.echo else len(prompt_text))
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": result.finished.reason}

    def body(self, results: list[ChoiceResult], generations: list[Generation]) -> dict[str, Any]:
        n = self.request.n
        choices = []
        for index, result in enumerate(results):
            first = results[index - index % n].finished  # choice 0 of the same prompt carries its scoring
            choices.append(self.body_choice(index, result, first.prompt_logprobs if first else ()))
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(generations),
        }

    def chunk(
        self, index: int, text: str, logprobs: list[TokenLogprob], reason: str | None = None, offset: int = 0
    ) -> dict[str, str]:
        choice = {"text": text, "index": index, "logprobs": self._logprobs(logprobs, offset), "finish_reason": reason}
        payload = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model}
        return {"data": json.dumps({**payload, "choices": [choice]})}


async def _stream(generations: list[Generation], reply: _Reply) -> AsyncIterator[dict[str, str]]:
    """Chunks of every prompt's choices as they come (the echoed prompt first), then ``[DONE]``."""
    n = reply.request.n
    if reply.request.echo:
        for index in range(len(generations) * n):
            yield reply.chunk(index, reply.texts[index // n], [])
    merged: asyncio.Queue[tuple[int, Event | None]] = asyncio.Queue()
    offsets = [0 if reply.request.echo else len(reply.texts[i // n]) for i in range(len(generations) * n)]

    async def pump(prompt: int, generation: Generation) -> None:
        try:
            async for event in generation:
                await merged.put((prompt, event))
        finally:
            await merged.put((prompt, None))

    tasks = [asyncio.ensure_future(pump(p, g)) for p, g in enumerate(generations)]
    try:
        open_ = len(tasks)
        while open_:
            prompt, event = await merged.get()
            if event is None:
                open_ -= 1
                continue
            index = prompt * n + event.index
            if isinstance(event, TextDelta):
                yield reply.chunk(index, event.text, list(event.logprobs), offset=offsets[index])
                offsets[index] += sum(len(token_text(reply.token_bytes(e.token))) for e in event.logprobs)
            elif event.reason == "error":
                yield {"data": json.dumps(engine_error(event).body())}
                return
            else:
                yield reply.chunk(index, "", list(event.logprobs), event.reason, offset=offsets[index])
        if reply.request.stream_options and reply.request.stream_options.include_usage:
            payload = {"id": reply.id, "object": "text_completion", "created": reply.created, "model": reply.model}
            yield {"data": json.dumps({**payload, "choices": [], "usage": usage(generations)})}
        yield {"data": "[DONE]"}
    finally:
        for task in tasks:
            task.cancel()


routes = [Route("/v1/completions", completions, methods=["POST"])]
