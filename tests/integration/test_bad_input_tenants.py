"""Bad input against a real server, part 4: tenants (admin), tenant settings, tenant keys,
comparisons, and what every management JSON body must survive.

See ``test_bad_input.py`` for what every case asserts. ``$globex_key`` is the id of globex's key.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.bad_input import (
    MANAGEMENT_JSON_LIMIT,
    BadInputWorld,
    Case,
    assert_alive_and_unchanged,
    assert_refused,
    case_params,
    streamed,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bad_input_baseline")]

T = "/v1/tenants"
SURROGATE = "\ud800"
"""A lone surrogate escape is JSON's syntax but no text: the body is refused whole, as the chat route does."""


def P(
    id: str,
    patch: Any,
    status: int = 400,
    code: str | None = "invalid_setting",
    param: str | None = None,
    key: str | None = "acme",
    tenant: str = "acme",
    bug: str | None = None,
) -> Case:
    """A settings case: PATCH /v1/tenants/<tenant> with ``patch``."""
    return Case(id, "PATCH", f"{T}/{tenant}", key, patch, status, code, param, bug)


TENANT_CASES = [
    Case("create-without-id", "POST", T, "admin", {}, param="id"),
    Case("create-id-traversal", "POST", T, "admin", {"id": "../x"}, code="invalid_id", param="id"),
    Case("create-id-upper-case", "POST", T, "admin", {"id": "ACME"}, code="invalid_id", param="id"),
    Case("create-id-newline", "POST", T, "admin", {"id": "acme\n"}, code="invalid_id", param="id"),
    Case("create-id-unicode", "POST", T, "admin", {"id": "ácme"}, code="invalid_id", param="id"),
    Case("create-id-lone-surrogate", "POST", T, "admin", {"id": SURROGATE}, code="invalid_json"),
    Case("create-id-overlong", "POST", T, "admin", {"id": "a" * 64}, code="invalid_id", param="id"),
    Case("create-id-leading-dash", "POST", T, "admin", {"id": "-acme"}, code="invalid_id", param="id"),
    Case("create-id-empty", "POST", T, "admin", {"id": ""}, code="invalid_id", param="id"),
    Case("create-id-number", "POST", T, "admin", {"id": 5}, code="invalid_id", param="id"),
    Case("create-id-null", "POST", T, "admin", {"id": None}, code="invalid_id", param="id"),
    Case("create-existing", "POST", T, "admin", {"id": "acme"}, 409, "tenant_exists", "id"),
    Case("create-with-tenant-key", "POST", T, "acme", {"id": "evil"}, 403, "admin_required"),
    Case("create-with-publishable-key", "POST", T, "pk", {"id": "evil"}, 403, "publishable_key_not_allowed"),
    Case("create-without-key", "POST", T, None, {"id": "evil"}, 401, "missing_api_key"),
    Case("create-with-wrong-key", "POST", T, "bad", {"id": "evil"}, 401, "invalid_api_key"),
    Case("list-with-tenant-key", "GET", T, "acme", status=403, code="admin_required"),
    Case("get-other-tenant", "GET", f"{T}/globex", "acme", status=404, param="id"),
    Case("get-unknown", "GET", f"{T}/nope", "admin", status=404, param="id"),
    Case("get-dot-dot", "GET", f"{T}/%2e%2e", "admin", status=404, param="id"),
    Case("get-nul", "GET", f"{T}/acme%00", "admin", status=404, param="id"),
    Case("get-overlong", "GET", f"{T}/{'t' * 5000}", "admin", status=404, param="id"),
    Case("get-publishable-key", "GET", f"{T}/acme", "pk", status=403, code="publishable_key_not_allowed"),
    Case("delete", "DELETE", f"{T}/acme", "admin", status=405),
    Case("put", "PUT", f"{T}/acme", "admin", {"display_name": "x"}, 405),
    P("patch-other-tenant", {"greeting": "hi"}, 404, None, "id", tenant="globex"),
    P("patch-unknown-tenant", {"greeting": "hi"}, 404, None, "id", key="admin", tenant="nope"),
    P("brand-color-a-name", {"brand_color": "red"}, param="brand_color"),
    P("brand-color-css-injection", {"brand_color": "#fff;background:url(x)"}, param="brand_color"),
    P("logo-url-javascript", {"logo_url": "javascript:alert(1)"}, param="logo_url"),
    P("logo-url-broken-ipv6", {"logo_url": "http://[::1"}, param="logo_url"),
    P("logo-url-with-password", {"logo_url": "https://u:p@acme.example/l.png"}, param="logo_url"),
    P("origins-wildcard", {"allowed_origins": ["*"]}, param="allowed_origins"),
    P("origins-with-path", {"allowed_origins": ["https://acme.example/shop"]}, param="allowed_origins"),
    P("origins-bad-port", {"allowed_origins": ["https://acme.example:99999"]}, param="allowed_origins"),
    P("origins-a-string", {"allowed_origins": "https://acme.example"}, param="allowed_origins"),
    P("origins-lone-surrogate", {"allowed_origins": [f"https://{SURROGATE}.example"]}, code="invalid_json"),
    P("system-prompt-overlong", {"system_prompt": "s" * 4001}, param="system_prompt"),
    P("greeting-a-number", {"greeting": 5}, param="greeting"),
    P("greeting-lone-surrogate", {"greeting": SURROGATE}, code="invalid_json"),
    P("display-name-empty", {"display_name": ""}, param="display_name"),
    P(
        "default-model-other-tenants",
        {"default_model": "globex/private"},
        code="invalid_default_model",
        param="default_model",
    ),
    P("default-model-missing", {"default_model": "acme/nope"}, code="model_not_found", param="default_model"),
    P("default-model-traversal", {"default_model": "../x"}, param="default_model"),
    P("limit-negative", {"limits": {"requests_per_minute": -1}}, param="limits.requests_per_minute"),
    P("limit-a-string", {"limits": {"requests_per_minute": "5"}}, param="limits.requests_per_minute"),
    P("limit-nan", {"limits": {"tokens_per_day": float("nan")}}, param="limits.tokens_per_day"),
    P("limits-not-an-object", {"limits": "none"}, param="limits"),
    P("limit-unknown", {"limits": {"gpu_hours": 1}}, code="invalid_request", param="limits.gpu_hours"),
    P(
        "ceilings-by-the-tenant",
        {"limit_ceilings": {"requests_per_minute": 10**6}},
        403,
        "admin_required",
        "limit_ceilings",
    ),
    P("patch-with-publishable-key", {"greeting": "hi"}, 403, "publishable_key_not_allowed", key="pk"),
]

K = f"{T}/acme/keys"
KEY_CASES = [
    Case("kind-unknown", "POST", K, "acme", {"kind": "admin"}, param="kind"),
    Case("kind-missing", "POST", K, "acme", {}, param="kind"),
    Case("kind-a-number", "POST", K, "acme", {"kind": 1}, param="kind"),
    Case("kind-a-list", "POST", K, "acme", {"kind": ["secret"]}, param="kind"),
    Case("create-for-other-tenant", "POST", f"{T}/globex/keys", "acme", {"kind": "secret"}, 404, param="id"),
    Case("create-for-unknown-tenant", "POST", f"{T}/nope/keys", "admin", {"kind": "secret"}, 404, param="id"),
    Case("create-with-publishable-key", "POST", K, "pk", {"kind": "secret"}, 403, "publishable_key_not_allowed"),
    Case("list-other-tenants", "GET", f"{T}/globex/keys", "acme", status=404, param="id"),
    Case("revoke-unknown", "DELETE", f"{K}/key_nope", "acme", status=404, code="key_not_found", param="key_id"),
    Case("revoke-other-tenants-key", "DELETE", f"{T}/globex/keys/$globex_key", "acme", status=404, param="id"),
    Case("revoke-other-tenants-key-id-as-own", "DELETE", f"{K}/$globex_key", "acme", status=404, code="key_not_found"),
    Case("revoke-newline", "DELETE", f"{K}/%0A", "acme", status=404, code="key_not_found"),
    Case("revoke-without-key", "DELETE", f"{K}/$globex_key", None, status=401, code="missing_api_key"),
    Case("keys-put", "PUT", K, "acme", {"kind": "secret"}, 405),
]


def vote(**changes: Any) -> dict[str, Any]:
    """A valid vote of acme with ``changes`` (a field set to ``...`` is left out)."""
    body = {"left_model": "base", "right_model": "acme/support", "prompt": "Hours?", "vote": "left", **changes}
    return {k: v for k, v in body.items() if v is not ...}


V = "/v1/comparisons"
COMPARISON_CASES = [
    Case("missing-vote", "POST", V, "acme", vote(vote=...), param="vote"),
    Case("vote-unknown", "POST", V, "acme", vote(vote="maybe"), param="vote"),
    Case("prompt-empty", "POST", V, "acme", vote(prompt="  "), param="prompt"),
    Case("prompt-a-number", "POST", V, "acme", vote(prompt=5), param="prompt"),
    Case("prompt-lone-surrogate", "POST", V, "acme", vote(prompt=SURROGATE), code="invalid_json"),
    Case("blind-a-string", "POST", V, "acme", vote(blind="yes"), param="blind"),
    Case("same-model-twice", "POST", V, "acme", vote(right_model="base"), param="right_model"),
    Case("same-adapter-by-two-names", "POST", V, "acme", vote(left_model="acme/support@2"), param="right_model"),
    Case("left-model-a-number", "POST", V, "acme", vote(left_model=5), param="left_model"),
    Case(
        "left-model-traversal", "POST", V, "acme", vote(left_model="../x"), code="invalid_model_id", param="left_model"
    ),
    Case("right-model-of-other-tenant", "POST", V, "acme", vote(right_model="globex/private"), 404, "model_not_found"),
    Case("right-model-missing-version", "POST", V, "acme", vote(right_model="acme/support@9"), 404, "model_not_found"),
    Case("other-tenant-named", "POST", V, "acme", vote(tenant="globex"), 404, param="tenant"),
    Case("admin-names-unknown-tenant", "POST", V, "admin", vote(tenant="nope"), 404, param="tenant"),
    Case("vote-with-publishable-key", "POST", V, "pk", vote(), 403, "publishable_key_not_allowed"),
    Case("list-limit-zero", "GET", f"{V}?limit=0", "acme", param="limit"),
    Case("list-limit-negative", "GET", f"{V}?limit=-1", "acme", param="limit"),
    Case("list-limit-too-big", "GET", f"{V}?limit=1001", "acme", param="limit"),
    Case("stats-without-key", "GET", f"{V}/stats", None, status=401, code="missing_api_key"),
    Case("stats-post", "POST", f"{V}/stats", "acme", vote(), 405),
]

# Every management route that reads a JSON body, with a caller that may use it: each must refuse
# each of MALFORMED the same way (the chat route's own variants are in test_bad_input.py).
JSON_ROUTES = {
    "create-tenant": ("POST", T, "admin"),
    "patch-tenant": ("PATCH", f"{T}/acme", "acme"),
    "create-key": ("POST", K, "acme"),
    "rollback": ("POST", "/v1/adapters/acme/support/rollback", "acme"),
    "create-job": ("POST", "/v1/fine_tuning/jobs", "acme"),
    "vote": ("POST", V, "acme"),
}
TOO_BIG = b"[" + b" " * MANAGEMENT_JSON_LIMIT + b"]"
MALFORMED: list[tuple[str, Any, int, str | None, str | None]] = [
    ("not-json", b"{bad", 400, "invalid_json", None),
    ("empty", b"", 400, "invalid_json", None),
    ("a-list", b"[]", 400, "invalid_json", None),
    ("not-utf8", b'{"id": "\xff"}', 400, "invalid_json", None),
    (
        "form-encoded",
        lambda w: {"content": b"id=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        400,
        "invalid_json",
        None,
    ),
    ("deeply-nested", b"[" * 20000 + b"]" * 20000, 400, "invalid_json", None),
    ("unknown-field", {"bogus": 1}, 400, None, "bogus"),
    ("over-limit", TOO_BIG, 413, "request_too_large", None),
    ("over-limit-chunked", lambda w: streamed({"content": TOO_BIG}), 413, "request_too_large", None),
]
JSON_CASES = [
    Case(f"{route}-{name}", method, path, key, body, status, code, param)
    for route, (method, path, key) in JSON_ROUTES.items()
    for name, body, status, code, param in MALFORMED
]


@pytest.mark.parametrize(
    "case",
    case_params(
        [c._replace(id=f"tenant-{c.id}") for c in TENANT_CASES]
        + [c._replace(id=f"key-{c.id}") for c in KEY_CASES]
        + [c._replace(id=f"comparison-{c.id}") for c in COMPARISON_CASES]
        + JSON_CASES
    ),
)
def test_refused(bad_input_world: BadInputWorld, case: Case) -> None:
    assert_refused(bad_input_world, case)


def test_afterwards_the_server_is_alive_and_nothing_changed(
    bad_input_world: BadInputWorld, bad_input_baseline: dict[str, Any]
) -> None:
    assert_alive_and_unchanged(bad_input_world, bad_input_baseline)
