"""The website widget in headless Chromium against the live ``swaplora serve``.

The test page is served from a second origin (another port, a tiny http.server) with the one
``<script>`` tag, and a host stylesheet that tries to break it (Shadow DOM must keep it out).
From an allowed origin the bubble opens, a message gets a streamed answer (the answer's text
changes several times before it ends), the conversation survives a reload, and a 429 is said
kindly; from an origin the tenant does not list, the widget says so and no answer comes.
Screenshots of both go to ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import browser, screenshot, static_site  # noqa: F401 (browser is a fixture)
from tests.integration.conftest import Server, auth

pytestmark = pytest.mark.integration

TENANT = "widget-shop"
NAME = "Wheelie Bikes"
GREETING = "Hi! Ask me anything about our bikes."
HOSTILE_CSS = "* { color: red !important; font-size: 40px !important; } button { display: none !important; }"
WIDGET = "#swaplora-widget"
ANSWER_OBSERVER = """() => {
  const log = document.querySelector('#swaplora-widget').shadowRoot.querySelector('.log');
  window.__answerTexts = [];
  // every delta replaces the answer's text node, so each record keeps one intermediate text,
  // even when several deltas arrive in one network read
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.TEXT_NODE && node.parentElement && node.parentElement.matches('.msg.assistant')) {
          window.__answerTexts.push(node.data);
        }
      }
    }
  }).observe(log, {subtree: true, childList: true});
}"""


def page_html(server: Server, key: str) -> str:
    return (
        f"<!doctype html><html><head><title>Shop</title><style>{HOSTILE_CSS}</style></head><body>"
        f"<h1>Wheelie Bikes shop</h1>"
        f'<script src="{server.url}/widget.js" data-tenant="{TENANT}" data-key="{key}" async></script>'
        "</body></html>"
    )


@pytest.fixture(scope="module")
def site(server: Server, http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tenant, its publishable key, and two origins serving the page: one allowed, one not."""
    admin = auth(server.admin_key)
    assert http.post("/v1/tenants", json={"id": TENANT}, headers=admin).status_code == 201
    key = http.post(f"/v1/tenants/{TENANT}/keys", json={"kind": "publishable"}, headers=admin).json()["api_key"]
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(page_html(server, key))
    with static_site(root) as allowed, static_site(root) as refused:
        settings = {
            "display_name": NAME,
            "brand_color": "#0f766e",
            "greeting": GREETING,
            "allowed_origins": [allowed],
            "default_model": "base",
        }
        response = http.patch(f"/v1/tenants/{TENANT}", json=settings, headers=admin)
        assert response.status_code == 200, response.text
        yield {"allowed": allowed, "refused": refused, "key": key, "admin": admin}


def shadow(page: Any, js: str) -> Any:
    """Evaluate ``js`` with ``root`` bound to the widget's shadow root."""
    return page.evaluate(f"() => {{ const root = document.querySelector('{WIDGET}').shadowRoot; return {js}; }}")


def open_bubble(page: Any) -> None:
    bubble = page.get_by_role("button", name=f"Open chat with {NAME}")
    bubble.click()
    page.get_by_role("dialog", name=NAME).wait_for(state="visible")


def send(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Your message")
    box.fill(text)
    box.press("Enter")


def test_widget_streams_an_answer_from_an_allowed_origin(browser: Any, site: Any, http: httpx.Client) -> None:
    page = browser.new_page()
    page.goto(site["allowed"] + "/index.html")
    open_bubble(page)
    assert page.get_by_text(GREETING).is_visible()
    assert shadow(page, "root.activeElement && root.activeElement.id") == "swl-input"
    # the host page's CSS does not reach in: our buttons show, in our colour and size
    assert shadow(page, "getComputedStyle(root.querySelector('.send')).display") != "none"
    assert shadow(page, "getComputedStyle(root.querySelector('.bubble')).backgroundColor") == "rgb(15, 118, 110)"
    assert shadow(page, "getComputedStyle(root.querySelector('textarea')).fontSize") == "15px"

    page.evaluate(ANSWER_OBSERVER)
    send(page, "Say hello in one short sentence.")
    page.wait_for_function(
        f"() => {{ const root = document.querySelector('{WIDGET}').shadowRoot;"
        " const a = root.querySelectorAll('.msg.assistant'); const last = a[a.length - 1];"
        " return a.length >= 2 && !last.hasAttribute('aria-busy') && last.textContent.trim().length > 0; }"
    )
    answer = shadow(page, "[...root.querySelectorAll('.msg.assistant')].pop().textContent")
    texts = [t for t in page.evaluate("window.__answerTexts") if t]
    assert len(set(texts)) >= 2, f"the answer arrived in one piece, not streamed: {texts}"
    assert texts[-1] == answer and shadow(page, "root.querySelector('.notice').textContent") == ""
    screenshot(page, "widget-allowed-origin")

    # kept for the tab's session: a reload shows the same conversation
    stored = page.evaluate(f"() => JSON.parse(sessionStorage.getItem('swaplora:{TENANT}:conversation'))")
    assert [t["role"] for t in stored] == ["user", "assistant"] and stored[1]["content"] == answer
    page.reload()
    open_bubble(page)
    assert shadow(page, "[...root.querySelectorAll('.msg.assistant')].pop().textContent") == answer

    # Escape closes and gives focus back to the bubble
    page.keyboard.press("Escape")
    assert shadow(page, "root.querySelector('.panel').hidden") is True
    assert shadow(page, "root.activeElement.className") == "bubble"

    # over a limit: a kind message with the wait, and no answer
    limited = http.patch(f"/v1/tenants/{TENANT}", json={"limits": {"requests_per_minute": 1}}, headers=site["admin"])
    assert limited.status_code == 200
    try:
        open_bubble(page)
        send(page, "And another question?")
        notice = page.get_by_role("alert")
        notice.filter(has_text="busy").wait_for()
        assert "try again in" in notice.text_content() and " s." in notice.text_content()
        assert shadow(page, "root.querySelectorAll('.msg.user').length") == 1
        assert page.get_by_role("textbox", name="Your message").input_value() == "And another question?"
    finally:
        http.patch(f"/v1/tenants/{TENANT}", json={"limits": {"requests_per_minute": None}}, headers=site["admin"])


def test_widget_on_a_phone_by_keyboard_and_offline(browser: Any, site: Any) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": 375, "height": 700})
    page.goto(site["allowed"] + "/index.html")
    bubble = page.get_by_role("button", name=f"Open chat with {NAME}")
    bubble.wait_for()
    page.keyboard.press("Tab")  # the bubble is the page's first focusable element
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=NAME)
    dialog.wait_for(state="visible")
    box = dialog.bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 375, 700)  # full screen
    browser.set_offline(True)
    try:
        send(page, "Are you there?")
        notice = page.get_by_role("alert")
        notice.filter(has_text="offline").wait_for()
        assert shadow(page, "root.querySelectorAll('.msg.user').length") == 0
    finally:
        browser.set_offline(False)


def test_widget_on_an_origin_not_allowed_says_so_and_gets_no_answer(browser: Any, site: Any) -> None:
    page = browser.new_page()
    page.goto(site["refused"] + "/index.html")
    bubble = page.get_by_role("button", name=f"Open chat with {TENANT}")  # no branding came
    bubble.click()
    notice = page.get_by_role("alert")
    notice.filter(has_text="not allowed").wait_for()
    assert notice.text_content() == "This site is not allowed to use this assistant."
    assert shadow(page, "root.querySelector('.send').disabled") is True
    send(page, "Hello?")
    assert shadow(page, "root.querySelectorAll('.msg').length") == 0
    screenshot(page, "widget-refused-origin")


def test_widget_thumbs_rate_an_answer_by_keyboard_without_shifting_the_layout(browser: Any, site: Any) -> None:
    page = browser.new_page()
    page.goto(site["allowed"] + "/index.html")
    open_bubble(page)
    send(page, "Name one colour.")
    page.wait_for_function(
        f"() => document.querySelector('{WIDGET}').shadowRoot.querySelector('.msg.assistant[aria-busy]') !== null"
        f" || document.querySelector('{WIDGET}').shadowRoot.querySelectorAll('.rate').length > 0"
    )
    # while the answer streams, its thumbs row already takes its place, unseen
    reserved = shadow(
        page,
        "(() => { const r = [...root.querySelectorAll('.rate')].pop();"
        " return [getComputedStyle(r).visibility, r.getBoundingClientRect().height]; })()",
    )
    assert reserved[1] > 0
    page.wait_for_function(
        f"() => {{ const r = [...document.querySelector('{WIDGET}').shadowRoot.querySelectorAll('.rate')].pop();"
        " return r && getComputedStyle(r).visibility === 'visible'; }"
    )
    shown = shadow(page, "[...root.querySelectorAll('.rate')].pop().getBoundingClientRect().height")
    assert shown == reserved[1]  # showing the thumbs moved nothing
    page.get_by_role("textbox", name="Your message").focus()
    page.keyboard.press("Shift+Tab")
    assert shadow(page, "root.activeElement.getAttribute('aria-label')") == "Not helpful"
    page.keyboard.press("Shift+Tab")
    assert shadow(page, "root.activeElement.getAttribute('aria-label')") == "Helpful"
    with page.expect_response(lambda r: "/v1/feedback" in r.url and r.request.method == "POST") as sent:
        page.keyboard.press("Enter")
    assert sent.value.status == 200, sent.value.text()
    assert sent.value.json()["rating"] == "up" and sent.value.json()["model"] == "base"
    page.get_by_role("button", name="Helpful", pressed=True).wait_for()
    stored = page.evaluate(f"() => JSON.parse(sessionStorage.getItem('swaplora:{TENANT}:conversation'))")
    assert stored[-1]["rating"] == "up" and stored[-1]["id"].startswith("chatcmpl-")
    page.get_by_role("button", name="Not helpful").click()  # a changed mind: one click
    page.get_by_role("button", name="Not helpful", pressed=True).wait_for()
    assert page.get_by_role("button", name="Helpful", pressed=False).count() >= 1
    screenshot(page, "widget-thumbs")


def test_widget_lists_the_sources_of_a_grounded_answer(browser: Any, site: Any, http: httpx.Client) -> None:
    handbook = Path(__file__).resolve().parents[2] / "examples" / "handbook.md"
    files = {"file": ("handbook.md", handbook.read_bytes(), "text/markdown")}
    data = {"purpose": "fine-tune", "tenant": TENANT}
    uploaded = http.post("/v1/files", headers=site["admin"], data=data, files=files)
    assert uploaded.status_code == 200, uploaded.text
    retrieval = {"enabled": True, "files": [uploaded.json()["id"]], "top_k": 2, "show_citations": True}
    short = {"retrieval": retrieval, "widget_max_tokens": 16}  # a short answer: the sources are the point
    assert http.patch(f"/v1/tenants/{TENANT}", json=short, headers=site["admin"]).status_code == 200
    try:
        page = browser.new_page()
        page.goto(site["allowed"] + "/index.html")
        page.evaluate(f"() => sessionStorage.removeItem('swaplora:{TENANT}:conversation')")
        page.reload()
        open_bubble(page)
        send(page, "How long is the warranty on a new bicycle frame?")
        sources = page.get_by_role("list", name="Sources")
        sources.wait_for(state="visible")
        items = sources.get_by_role("listitem").all_text_contents()
        assert items and items[0].startswith("handbook.md \u2014 ") and "warranty" in items[0].lower(), items
        screenshot(page, "widget-sources")
        page.reload()  # kept with the conversation
        open_bubble(page)
        assert page.get_by_role("list", name="Sources").get_by_role("listitem").all_text_contents() == items
    finally:
        reset = {"retrieval": None, "widget_max_tokens": None}
        http.patch(f"/v1/tenants/{TENANT}", json=reset, headers=site["admin"])
