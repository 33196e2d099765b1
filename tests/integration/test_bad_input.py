"""Bad input against a real server, part 1: chat, models, me, the widget routes, CORS preflights,
keys in general, methods and unknown routes.

Every case is one request and the refusal it must get: a 4xx in OpenAI's error shape (status, and
``code``/``param`` where the server names them), after which the server still answers and, for
anything but a GET, nothing changed on disk or in any listing (``assert_refused``). The server is
the bad-input server of ``conftest.py`` (small limits, tenants ``acme`` and ``globex``); the other
parts are ``test_bad_input_<area>.py``. A case with ``bug=`` is a real bug, kept as a strict xfail
that asserts the correct behaviour, so it fails loudly once fixed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.bad_input import (
    ALLOWED_ORIGIN,
    BAD_INPUT_SETTINGS,
    BadInputWorld,
    Case,
    assert_alive_and_unchanged,
    assert_refused,
    case_params,
    cases_for,
    streamed,
)
from tests.integration.conftest import (
    assert_openai_error,
    auth,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bad_input_baseline")]

CHAT_LIMIT = int(BAD_INPUT_SETTINGS["MAX_CHAT_BODY_BYTES"])
CONTEXT = int(BAD_INPUT_SETTINGS["MAX_CONTEXT"])
PK_MAX_TOKENS = int(BAD_INPUT_SETTINGS["PUBLISHABLE_MAX_TOKENS"])
CHAT_PATH = "/v1/chat/completions"
OVERLONG = "a" * 5000
"""An id far longer than any id (1-63 characters), still well inside a URL's limits."""


def chat(**changes: Any) -> dict[str, Any]:
    """A valid, tiny chat request with ``changes``; a field set to ``...`` is left out."""
    body = {"model": "base", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **changes}
    return {k: v for k, v in body.items() if v is not ...}


COMPLETIONS = "/v1/completions"


def completion(**changes: Any) -> dict[str, Any]:
    body = {"model": "base", "prompt": "Hi", "max_tokens": 2, **changes}
    return {k: v for k, v in body.items() if v is not ...}


def TOOL(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}}


def NAMED(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def SCHEMA(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def raw(content: bytes, content_type: str = "application/json", **headers: str):
    return lambda w: {"content": content, "headers": {"Content-Type": content_type, **headers}}


def from_origin(origin: str, body: dict[str, Any] | None = None):
    """A chat request (``body`` or a valid one) sent from a web page at ``origin``."""
    return lambda w: {"json": body or chat(), "headers": {"Origin": origin}}


def header(name: str, value: str | bytes):
    return lambda w: {"headers": {name: value}}


def preflight(origin: str):
    return lambda w: {"headers": {"Origin": origin, "Access-Control-Request-Method": "POST"}}


def msg(**fields: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Hi", **fields}]


def too_big_chat(w: BadInputWorld) -> dict[str, Any]:
    return {"json": chat(messages=msg(content="x" * CHAT_LIMIT))}


C = cases_for("POST", CHAT_PATH)
CC = cases_for("POST", COMPLETIONS)
"""A chat case: POST /v1/chat/completions with ``body``."""


LONG_PROMPT = " ".join(f"word{i}" for i in range(900))  # ~4.5 KB: inside the body limit, far past 256 tokens

CHAT_CASES = [
    C("malformed-json", b'{"model": "base", "messages": ['),
    C("empty-body", b""),
    C("body-is-a-list", [chat()]),
    C("body-is-a-string", "Hi"),
    C("non-utf8-body", b'{"model": "base", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    C("lone-surrogate-in-content", chat(messages=msg(content="\ud800"))),
    C("deeply-nested-json", b"[" * 4000 + b"]" * 4000),
    C("form-encoded-body", raw(b"model=base&messages=Hi", "application/x-www-form-urlencoded")),
    C("missing-model", chat(model=...), param="model"),
    C("model-not-a-string", chat(model=5), param="model"),
    C("missing-messages", chat(messages=...), param="messages"),
    C("messages-not-a-list", chat(messages="Hi"), param="messages"),
    C("messages-empty", chat(messages=[]), param="messages"),
    C("message-without-role", chat(messages=[{"content": "Hi"}]), param="messages.0.role"),
    C("unknown-role", chat(messages=msg(role="robot"))),
    C("tool-message-without-call-id", chat(messages=msg(role="tool")), param="messages.0.tool_call_id"),
    C("tool-calls-on-a-user-message", chat(messages=msg(tool_calls=[])), param="messages.0.tool_calls"),
    C("content-null", chat(messages=msg(content=None))),
    C("content-image-part", chat(messages=msg(content=[{"type": "image_url", "image_url": {"url": "http://x"}}]))),
    C("message-unknown-field", chat(messages=msg(audio={}))),
    C("temperature-negative", chat(temperature=-1), param="temperature"),
    C("temperature-string", chat(temperature="hot"), param="temperature"),
    C("temperature-nan", chat(temperature=float("nan")), param="temperature"),
    C("top-p-zero", chat(top_p=0), param="top_p"),
    C("top-p-infinity", chat(top_p=float("inf")), param="top_p"),
    C("max-tokens-zero", chat(max_tokens=0), param="max_tokens"),
    C("max-tokens-string", chat(max_tokens="4"), param="max_tokens"),
    C("max-tokens-fraction", chat(max_tokens=2.5), param="max_tokens"),
    C("max-tokens-past-context", chat(max_tokens=CONTEXT), code="context_length_exceeded", param="max_tokens"),
    C(
        "max-completion-tokens-past-context",
        chat(max_tokens=..., max_completion_tokens=10**9),
        code="context_length_exceeded",
        param="max_completion_tokens",
    ),
    C("prompt-past-context", chat(messages=msg(content=LONG_PROMPT)), code="context_length_exceeded", param="messages"),
    C("n-above-the-setting", chat(n=99), param="n"),
    C("n-zero", chat(n=0), param="n"),
    C("tool-name-with-space", chat(tools=[TOOL("a b")]), param="tools.0.function.name"),
    C("tools-65", chat(tools=[TOOL(f"f{i}") for i in range(65)]), param="tools"),
    C("tool-choice-auto-on-a-template-without-tools", chat(tools=[TOOL("f")]), code="tool_choice_unsupported"),
    C("tool-choice-unknown-function", chat(tools=[TOOL("f")], tool_choice=NAMED("g")), param="tool_choice"),
    C("tool-parameters-not-an-object", chat(tools=[TOOL("f", {"type": "string"})], tool_choice="required")),
    C("logit-bias-over-100", chat(logit_bias={"1": 500}), param="logit_bias"),
    C("logit-bias-not-a-token-id", chat(logit_bias={"x": 5}), param="logit_bias"),
    C("logit-bias-outside-the-vocabulary", chat(logit_bias={"99999999": 5}), param="logit_bias"),
    C("top-logprobs-without-logprobs", chat(top_logprobs=2), param="top_logprobs"),
    C("top-logprobs-21", chat(logprobs=True, top_logprobs=21), param="top_logprobs"),
    C("frequency-penalty-3", chat(frequency_penalty=3), param="frequency_penalty"),
    C("response-format-unknown-type", chat(response_format={"type": "xml"}), param="response_format"),
    C("response-format-unsupported-schema", chat(response_format=SCHEMA({"type": "array", "uniqueItems": True}))),
    C("functions-legacy", chat(functions=[{"name": "f"}]), param="functions"),
    C("stream-string", chat(stream="yes"), param="stream"),
    C(
        "stream-options-wrong-type",
        chat(stream=True, stream_options={"include_usage": "yes"}),
        param="stream_options.include_usage",
    ),
    C("five-stops", chat(stop=["a", "b", "c", "d", "e"]), param="stop"),
    C("empty-stop", chat(stop=[""]), param="stop"),
    C("seed-2-to-the-64", chat(seed=2**64), param="seed"),
    C("user-overlong", chat(user="u" * 300), param="user"),
    C("model-path-traversal", chat(model="../etc"), code="invalid_model_id", param="model"),
    C("model-traversal-in-name", chat(model="acme/../x"), code="invalid_model_id", param="model"),
    C("model-version-zero", chat(model="acme/support@0"), code="invalid_model_id", param="model"),
    C("model-version-ten-digits", chat(model="acme/support@1234567890"), code="invalid_model_id", param="model"),
    C("model-upper-case", chat(model="ACME/support"), code="invalid_model_id", param="model"),
    C("model-newline", chat(model="acme/support\n"), code="invalid_model_id", param="model"),
    C("model-unicode", chat(model="ácme/support"), code="invalid_model_id", param="model"),
    C("model-overlong", chat(model="a" * 64 + "/support"), code="invalid_model_id", param="model"),
    C("model-openai-name", chat(model="gpt-4o"), code="invalid_model_id", param="model"),
    C("model-missing-version", chat(model="acme/support@99"), 404, "model_not_found", "model"),
    C("model-missing-adapter", chat(model="acme/nope"), 404, "model_not_found", "model"),
    C("model-of-other-tenant", chat(model="globex/private"), 404, "model_not_found", "model"),
    C("body-over-limit", too_big_chat, 413, "request_too_large"),
    C("body-over-limit-chunked", lambda w: streamed(too_big_chat(w)), 413, "request_too_large"),
    C("no-key", chat(), 401, "missing_api_key", key=None),
    C("wrong-key", chat(), 401, "invalid_api_key", key="bad"),
    C("basic-auth", header("Authorization", "Basic YWNtZTpwdw=="), 401, "missing_api_key", key=None),
    C("publishable-key-without-origin", chat(), 403, "origin_not_allowed", key="pk"),
    C("publishable-key-other-origin", from_origin("https://evil.example"), 403, "origin_not_allowed", key="pk"),
    C(
        "publishable-key-other-model",
        from_origin(ALLOWED_ORIGIN, chat(model="acme/support")),
        403,
        "model_not_allowed",
        "model",
        key="pk",
    ),
    C(
        "publishable-key-ignore-eos",
        from_origin(ALLOWED_ORIGIN, chat(ignore_eos=True)),
        403,
        "parameter_not_allowed",
        "ignore_eos",
        key="pk",
    ),
    C(
        "publishable-key-too-many-tokens",
        from_origin(ALLOWED_ORIGIN, chat(max_tokens=PK_MAX_TOKENS + 1)),
        code="max_tokens_too_large",
        param="max_tokens",
        key="pk",
    ),
]

OTHER_CASES = [
    # CORS preflights carry no key; they must name a tenant that lists the origin
    Case(
        "preflight-naming-no-tenant", "OPTIONS", CHAT_PATH, None, preflight(ALLOWED_ORIGIN), 403, "origin_not_allowed"
    ),
    Case(
        "preflight-other-origin",
        "OPTIONS",
        CHAT_PATH + "?tenant=acme",
        None,
        preflight("https://evil.example"),
        403,
        "origin_not_allowed",
    ),
    Case(
        "preflight-bad-tenant-id",
        "OPTIONS",
        CHAT_PATH + "?tenant=..%2Facme",
        None,
        preflight(ALLOWED_ORIGIN),
        403,
        "origin_not_allowed",
    ),
    Case(
        "preflight-widget-config-other-tenant",
        "OPTIONS",
        "/v1/widget/config?tenant=globex",
        None,
        preflight(ALLOWED_ORIGIN),
        403,
        "origin_not_allowed",
    ),
    # models
    Case("models-no-key", "GET", "/v1/models", None, status=401, code="missing_api_key"),
    Case("models-publishable-key", "GET", "/v1/models", "pk", status=403, code="publishable_key_not_allowed"),
    Case("get-model-of-other-tenant", "GET", "/v1/models/globex/private", "acme", status=404, code="model_not_found"),
    Case("get-model-missing", "GET", "/v1/models/acme/nope", "acme", status=404, code="model_not_found"),
    Case("get-model-version-zero", "GET", "/v1/models/acme/support@0", "acme", status=404, code="model_not_found"),
    Case("get-model-dot-dot", "GET", "/v1/models/%2e%2e/%2e%2e", "admin", status=404, code="model_not_found"),
    Case("get-model-newline", "GET", "/v1/models/acme/support%0A", "acme", status=404, code="model_not_found"),
    Case("get-model-overlong", "GET", "/v1/models/acme/" + OVERLONG, "acme", status=404, code="model_not_found"),
    Case("models-post", "POST", "/v1/models", "acme", status=405),
    Case("model-delete", "DELETE", "/v1/models/acme/support", "acme", status=405),
    # me
    Case("me-no-key", "GET", "/v1/me", None, status=401, code="missing_api_key"),
    Case("me-wrong-key", "GET", "/v1/me", "bad", status=401, code="invalid_api_key"),
    Case("me-bearer-without-key", "GET", "/v1/me", None, header("Authorization", "Bearer"), 401, "missing_api_key"),
    Case(
        "me-non-ascii-key",
        "GET",
        "/v1/me",
        None,
        header("Authorization", b"Bearer \xff\xfe\xc3\xa9"),
        401,
        "invalid_api_key",
    ),
    Case(
        "me-overlong-key",
        "GET",
        "/v1/me",
        None,
        header("Authorization", "Bearer " + "k" * 12000),
        401,
        "invalid_api_key",
    ),
    Case("me-publishable-key", "GET", "/v1/me", "pk", status=403, code="publishable_key_not_allowed"),
    Case("me-post", "POST", "/v1/me", "acme", status=405),
    # the widget
    Case("widget-config-no-tenant", "GET", "/v1/widget/config", "acme", param="tenant"),
    Case("widget-config-other-tenant", "GET", "/v1/widget/config?tenant=globex", "acme", status=404, param="tenant"),
    Case("widget-config-unknown-tenant", "GET", "/v1/widget/config?tenant=nope", "admin", status=404, param="tenant"),
    Case("widget-config-traversal", "GET", "/v1/widget/config?tenant=..%2F..", "admin", status=404, param="tenant"),
    Case("widget-config-nul", "GET", "/v1/widget/config?tenant=acme%00", "acme", status=404, param="tenant"),
    Case("widget-config-no-key", "GET", "/v1/widget/config?tenant=acme", None, status=401, code="missing_api_key"),
    Case(
        "widget-config-pk-without-origin",
        "GET",
        "/v1/widget/config?tenant=acme",
        "pk",
        status=403,
        code="origin_not_allowed",
    ),
    Case(
        "widget-config-pk-other-origin",
        "GET",
        "/v1/widget/config?tenant=acme",
        "pk",
        header("Origin", "https://evil.example"),
        403,
        "origin_not_allowed",
    ),
    Case("widget-config-post", "POST", "/v1/widget/config?tenant=acme", "acme", status=405),
    Case("widget-js-post", "POST", "/widget.js", None, status=405),
    # routes that do not exist, and methods a route does not take
    Case("unknown-route", "GET", "/v1/nope", "acme", status=404),
    Case("chat-route-typo", "POST", "/v1/chat/completion", "acme", chat(), 404),
    Case("chat-get", "GET", CHAT_PATH, "acme", status=405),
    Case("chat-put", "PUT", CHAT_PATH, "acme", chat(), 405),
]


COMPLETION_CASES = [
    CC("completions-suffix", completion(suffix="x"), param="suffix"),
    CC("completions-no-prompt", completion(prompt=...), param="prompt"),
    CC("completions-17-prompts", completion(prompt=["a"] * 17), param="prompt"),
    CC("completions-ids-outside-the-vocabulary", completion(prompt=[10**8]), param="prompt"),
    CC("completions-best-of-above-n", completion(best_of=3), param="best_of"),
    CC("completions-max-tokens-0-without-echo", completion(max_tokens=0), param="max_tokens"),
    CC("completions-echo-logprobs-streamed", completion(echo=True, logprobs=1, stream=True), param="stream"),
    CC("completions-other-tenant", completion(model="globex/private"), 404, "model_not_found", "model"),
    CC("completions-no-key", completion(), 401, key=None),
]


@pytest.mark.parametrize("case", case_params(CHAT_CASES + COMPLETION_CASES + OTHER_CASES))
def test_refused(bad_input_world: BadInputWorld, case: Case) -> None:
    assert_refused(bad_input_world, case)


def test_guessing_keys_is_throttled_per_address(bad_input_world: BadInputWorld) -> None:
    """After SWAPLORA_AUTH_FAILURES_PER_MINUTE wrong keys from one address (here a proxied one,
    so that no other case's address is used up), even the right key gets 429 from there."""
    w, stranger = bad_input_world, {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(int(BAD_INPUT_SETTINGS["AUTH_FAILURES_PER_MINUTE"])):
        assert_openai_error(w.http.get("/v1/me", headers={**auth(w.keys["bad"]), **stranger}), 401, "invalid_api_key")
    throttled = w.http.get("/v1/me", headers={**auth(w.keys["acme"]), **stranger})
    assert_openai_error(throttled, 429, "rate_limit_exceeded")
    assert int(throttled.headers["Retry-After"]) >= 1
    assert w.http.get("/v1/me", headers=auth(w.keys["acme"])).status_code == 200  # other addresses unaffected


def test_afterwards_the_server_chats_and_nothing_changed(
    bad_input_world: BadInputWorld, bad_input_baseline: dict[str, Any]
) -> None:
    w = bad_input_world
    reply = w.http.post(CHAT_PATH, json=chat(max_tokens=1), headers=auth(w.keys["acme"]))
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 1, reply.text
    assert_alive_and_unchanged(w, bad_input_baseline)
