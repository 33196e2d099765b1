"""CORS and the publishable-key rule through the real middleware, routes and registry.

No model is loaded here: chat answers 503 ``model_loading`` once a request has passed every
tenancy check, so a 503 means "allowed" and a 403 names the rule that refused it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.server.helpers import CHAT, SITE, assert_error, bearer

OTHER_SITE = "https://evil.example"


def preflight(cors_env: dict[str, Any], path: str, origin: str) -> Any:
    return cors_env["client"].options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_preflight_allows_only_the_tenants_origins(cors_env: dict[str, Any]) -> None:
    allowed = preflight(cors_env, "/v1/chat/completions?tenant=acme", SITE)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in allowed.headers
    for path, origin in [
        ("/v1/chat/completions?tenant=acme", OTHER_SITE),
        ("/v1/chat/completions?tenant=acme", "https://globex.example"),  # globex's, not acme's
        ("/v1/chat/completions?tenant=nobody", SITE),
        ("/v1/chat/completions?tenant=../x", SITE),
        ("/v1/chat/completions", OTHER_SITE),
        # no tenant named: refused even for an origin a tenant lists (no oracle,
        # no scan over every tenant's settings for a stranger)
        ("/v1/chat/completions", SITE),
        ("/v1/widget/config", SITE),
    ]:
        refused = preflight(cors_env, path, origin)
        assert_error(refused, 403, "origin_not_allowed")
        assert "access-control-allow-origin" not in refused.headers


def test_management_api_never_answers_cross_origin(cors_env: dict[str, Any]) -> None:
    headers = {"Origin": SITE, **bearer(cors_env["secret"]["acme"])}
    response = cors_env["client"].get("/v1/tenants/acme", headers=headers)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert preflight(cors_env, "/v1/tenants/acme", SITE).status_code in (404, 405)


def test_widget_config_for_an_allowed_origin(cors_env: dict[str, Any]) -> None:
    headers = {"Origin": SITE, **bearer(cors_env["pk"])}
    response = cors_env["client"].get("/v1/widget/config?tenant=acme", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SITE and response.headers["vary"] == "Origin"
    assert response.headers["access-control-expose-headers"] == "Retry-After"
    assert response.json() == {
        "object": "widget.config",
        "tenant": "acme",
        "display_name": "Acme",
        "brand_color": "#ff6600",
        "logo_url": None,
        "greeting": None,
        "model": "base",
        "show_citations": False,
    }
    assert "secret" not in response.text  # never the system prompt


@pytest.mark.parametrize("origin", [OTHER_SITE, "https://globex.example", None, "null"])
def test_publishable_key_from_another_origin_is_refused(cors_env: dict[str, Any], origin: str | None) -> None:
    headers = bearer(cors_env["pk"]) | ({"Origin": origin} if origin else {})
    config = cors_env["client"].get("/v1/widget/config?tenant=acme", headers=headers)
    assert_error(config, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in config.headers
    assert_error(cors_env["client"].post("/v1/chat/completions", json=CHAT, headers=headers), 403, "origin_not_allowed")


def test_publishable_key_chats_only_with_the_default_model(cors_env: dict[str, Any]) -> None:
    headers = {"Origin": SITE, **bearer(cors_env["pk"])}
    allowed = cors_env["client"].post("/v1/chat/completions", json=CHAT, headers=headers)
    assert_error(allowed, 503, "model_loading")  # passed every tenancy check
    assert allowed.headers["access-control-allow-origin"] == SITE
    for model in ("acme/support", "globex/private", "acme/support@1"):
        refused = cors_env["client"].post("/v1/chat/completions", json={**CHAT, "model": model}, headers=headers)
        assert_error(refused, 403, "model_not_allowed")


def test_publishable_keys_cannot_force_long_answers(cors_env: dict[str, Any]) -> None:
    """A page visitor must not make the server decode thousands of tokens on the tenant's budget."""
    headers = {"Origin": SITE, **bearer(cors_env["pk"])}
    chat = cors_env["client"].post
    assert_error(
        chat("/v1/chat/completions", json={**CHAT, "ignore_eos": True}, headers=headers), 403, "parameter_not_allowed"
    )
    too_long = chat("/v1/chat/completions", json={**CHAT, "max_tokens": 1025}, headers=headers)
    assert_error(too_long, 400, "max_tokens_too_large")
    assert too_long.json()["error"]["param"] == "max_tokens"
    assert_error(chat("/v1/chat/completions", json={**CHAT, "max_tokens": 1024}, headers=headers), 503, "model_loading")
    # a secret key (the tenant's own server) keeps both
    secret = bearer(cors_env["secret"]["acme"])
    for extra in ({"ignore_eos": True}, {"max_tokens": 4000}):
        assert_error(chat("/v1/chat/completions", json={**CHAT, **extra}, headers=secret), 503, "model_loading")


def test_widget_config_of_another_tenant_is_not_found(cors_env: dict[str, Any]) -> None:
    headers = {"Origin": SITE, **bearer(cors_env["pk"])}
    assert_error(cors_env["client"].get("/v1/widget/config?tenant=globex", headers=headers), 404)
    assert_error(cors_env["client"].get("/v1/widget/config", headers=headers), 400)
    # the tenant's secret key (a preview, say) reads its config without any origin
    own = cors_env["client"].get("/v1/widget/config?tenant=acme", headers=bearer(cors_env["secret"]["acme"]))
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers


def test_secret_keys_get_no_cors_headers(cors_env: dict[str, Any]) -> None:
    response = cors_env["client"].post(
        "/v1/chat/completions", json=CHAT, headers={"Origin": SITE, **bearer(cors_env["secret"]["acme"])}
    )
    assert_error(response, 503, "model_loading")
    assert "access-control-allow-origin" not in response.headers


def test_widget_script_is_served_with_caching(cors_env: dict[str, Any]) -> None:
    response = cors_env["client"].get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "max-age=" in response.headers["cache-control"] and response.headers["etag"]
    assert "attachShadow" in response.text
    # nothing external: the only URL is the embedding example in the header comment
    assert re.findall(r"https?://[^\s\"'<>]+", response.text) == ["https://HOST/widget.js"]
    again = cors_env["client"].get("/widget.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
