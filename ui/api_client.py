"""The UI's only way to the server: its public HTTP API, with the signed-in user's key.

Contract:

- :class:`ApiClient` wraps one ``api_url`` (the server root, e.g. ``http://127.0.0.1:8000``) and
  one API key. JSON calls go through httpx; chat streams through the official ``openai`` client,
  exactly as any other client would talk to swaplora.
- Every failure (an OpenAI-shaped error body, a refused connection, a timeout, an error event in
  the middle of a stream) is raised as :class:`ApiError`, whose message is the server's own
  ``error.message`` (``<``, ``>`` and ``&`` escaped: toasts render HTML). ApiError is a
  ``gr.Error``, so a UI handler that lets it through shows the user that message in a toast,
  never a stack trace.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import gradio as gr
import httpx
import openai

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

TIMEOUT_S = 300.0
"""Generous: a chat on a busy CPU server or a large upload may take minutes."""


class ApiError(gr.Error):
    """An error from the API, carrying the server's readable message, HTTP status and code."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(html.escape(message, quote=False), duration=15, title="Error", print_exception=False)
        self.text = message
        self.status = status
        self.code = code


def _from_body(status: int, body: Any, fallback: str) -> ApiError:
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return ApiError(error["message"], status, error.get("code"))
    return ApiError(fallback, status)


def _from_openai(exc: openai.OpenAIError, api_url: str) -> ApiError:
    if isinstance(exc, openai.APIConnectionError):
        return ApiError(f"Cannot reach the API server at {api_url}.", None, "connection_error")
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return ApiError(body["message"], status, body.get("code"))
    return ApiError(getattr(exc, "message", None) or str(exc), status)


def _openai_messages(messages: Sequence[Mapping[str, str]]) -> list[ChatCompletionMessageParam]:
    """The ``{"role", "content"}`` mappings as the openai client's message type (the same dicts)."""
    return cast("list[ChatCompletionMessageParam]", list(messages))


class ApiClient:
    """Calls to one swaplora server with one key; use as ``async with ApiClient(url, key) as api``."""

    def __init__(self, api_url: str, key: str, headers: Mapping[str, str] | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.key = key
        self._http = httpx.AsyncClient(
            base_url=self.api_url, headers={**(headers or {}), "Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer, else :class:`ApiError` with the server's message."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(f"The API server at {self.api_url} did not answer in time.", None, "timeout") from None
        except httpx.HTTPError:
            raise ApiError(f"Cannot reach the API server at {self.api_url}.", None, "connection_error") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        raise _from_body(response.status_code, body, f"The server answered {response.status_code}.")

    async def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request` for an endpoint that answers a JSON object."""
        return cast(dict[str, Any], await self.request(method, path, **kwargs))

    async def _data(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The ``data`` list of a ``GET`` list endpoint's answer."""
        return cast(list[dict[str, Any]], (await self.request("GET", path, **kwargs))["data"])

    # ------------------------------------------------------------------- identity and models

    async def me(self) -> dict[str, Any]:
        return await self._object("GET", "/v1/me")

    async def tenants(self) -> list[dict[str, Any]]:
        return await self._data("/v1/tenants")

    async def tenant(self, tenant_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/v1/tenants/{tenant_id}")

    async def stream_chat(
        self, model: str, messages: Sequence[Mapping[str, str]], temperature: float, max_tokens: int
    ) -> AsyncIterator[tuple[str, str, list[dict[str, Any]] | None]]:
        """Yield ``(served model id, text delta, citations)`` as the answer streams in; citations
        (the passages retrieval gave the answer) come with the finish chunk, else None."""
        client = openai.AsyncOpenAI(base_url=f"{self.api_url}/v1", api_key=self.key, max_retries=0, timeout=TIMEOUT_S)
        try:
            stream = await client.chat.completions.create(
                model=model,
                messages=_openai_messages(messages),
                temperature=temperature,
                max_tokens=max_tokens,
                stream=True,
            )
            async for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                yield chunk.model, delta or "", (chunk.model_extra or {}).get("citations")
        except openai.OpenAIError as exc:
            raise _from_openai(exc, self.api_url) from None
        finally:
            await client.close()

    # ------------------------------------------------------------------- adapters

    async def adapters(self) -> list[dict[str, Any]]:
        """Every adapter the key may see, each with all its versions' manifests."""
        return await self._data("/v1/adapters")

    async def adapter(self, adapter_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/v1/adapters/{adapter_id}")

    async def rollback(self, adapter_id: str, version: int) -> dict[str, Any]:
        return await self._object("POST", f"/v1/adapters/{adapter_id}/rollback", json={"version": version})

    async def adapter_stats(self, adapter_id: str) -> dict[str, Any]:
        """The per-version scoreboard and the traffic split."""
        return await self._object("GET", f"/v1/adapters/{adapter_id}/stats")

    async def set_traffic(self, adapter_id: str, traffic: Mapping[str, int] | None) -> dict[str, Any]:
        return await self._object("PATCH", f"/v1/adapters/{adapter_id}", json={"traffic": traffic})

    async def delete_adapter(self, adapter_id: str) -> dict[str, Any]:
        return await self._object("DELETE", f"/v1/adapters/{adapter_id}")

    async def delete_version(self, adapter_id: str, version: int) -> dict[str, Any]:
        return await self._object("DELETE", f"/v1/adapters/{adapter_id}/versions/{version}")

    async def upload_adapter(self, name: str, paths: Sequence[Path], tenant: str | None) -> dict[str, Any]:
        data = {"name": name, **({"tenant": tenant} if tenant else {})}
        files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        return await self._object("POST", "/v1/adapters", data=data, files=files)

    # ------------------------------------------------------------------- comparisons

    async def record_vote(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._object("POST", "/v1/comparisons", json=dict(body))

    async def comparison_stats(self) -> list[dict[str, Any]]:
        return await self._data("/v1/comparisons/stats")

    # ------------------------------------------------------------------- files and fine-tuning jobs

    async def upload_file(self, path: Path, tenant: str | None) -> dict[str, Any]:
        data = {"purpose": "fine-tune", **({"tenant": tenant} if tenant else {})}
        return await self._object("POST", "/v1/files", data=data, files={"file": (path.name, path.read_bytes())})

    async def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._object("POST", "/v1/fine_tuning/jobs", json=dict(body))

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/v1/fine_tuning/jobs/{job_id}")

    async def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        return await self._data("/v1/fine_tuning/jobs", params={"limit": limit})

    async def job_events(self, job_id: str, after: str | None = None) -> dict[str, Any]:
        """One page of the job's events, newest first; ``after`` continues with older ones."""
        params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
        return await self._object("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params=params)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._object("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")
