"""The UI page in headless Chromium (Debian's ``chromium`` via :mod:`tests.browser`) against the
live server: each tab opens without a console error, a page error or an error toast, with a
screenshot of each kept in ``test-artifacts/``; a wrong key is refused with the server's message;
and the progress bar of the Train tab moves while a short real training job runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser, screenshot  # noqa: F401 (browser is a fixture)
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

TABS = ("Chat", "Train", "Compare", "Adapters")
TOAST = "[data-testid=toast-body].error"
TRAINING_CSV = (
    "question,answer\n"
    "When is Lumen Lane Bicycles open?,Tuesday to Saturday from 9:30 to 18:00.\n"
    "How much is a basic tune-up?,A basic tune-up costs 45 pounds.\n"
)
JOB_TIMEOUT_S = 600


class PageProblems:
    """Console errors and uncaught exceptions of a page, collected as they happen."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


def open_ui(browser: Any, server: Server, key: str) -> tuple[Any, PageProblems]:
    page = browser.new_page()
    problems = PageProblems(page)
    page.goto(f"{server.url}/ui/", wait_until="load")  # no session yet: the gate's sign-in page
    assert page.url == f"{server.url}/ui/sign-in"
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    return page, problems


def test_each_tab_opens_without_errors(
    browser: Any,
    server: Server,
    tenant_keys: dict[str, str],
    support_v1: dict,
) -> None:
    page, problems = open_ui(browser, server, tenant_keys["acme"])
    page.get_by_text("Signed in as tenant").wait_for()
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        page.get_by_role("tab", name=tab, selected=True).wait_for()
        if tab == "Adapters":
            page.get_by_text("acme/support", exact=True).filter(visible=True).first.wait_for()  # the listing arrived
            # the rollout panel: the picked adapter's scoreboard next to its split, and the promote button
            page.get_by_text("Versions in service").first.wait_for()
            page.get_by_role("button", name="Promote this version (100 %)").wait_for()
            page.get_by_label("Traffic split (version: percent, ...)").wait_for()
        page.wait_for_timeout(500)  # let late renders (plots, tables) settle before the picture
        screenshot(page, f"ui-{tab.lower()}")
        assert page.locator(TOAST).count() == 0, page.locator(TOAST).all_inner_texts()
    assert problems.errors == []


def test_a_wrong_key_is_refused_readably_and_sign_out_ends_the_session(
    browser: Any, server: Server, tenant_keys: dict[str, str]
) -> None:
    page, problems = open_ui(browser, server, "sk-swl-wrong")
    alert = page.get_by_role("alert")
    alert.filter(has_text="Incorrect API key provided.").wait_for()
    screenshot(page, "ui-wrong-key")
    assert "Traceback" not in alert.inner_text() and page.url == f"{server.url}/ui/sign-in"
    assert "swaplora_ui" not in {c["name"] for c in page.context.cookies()}

    page.get_by_label("API key").fill(tenant_keys["acme"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as tenant").wait_for()
    assert page.request.get(f"{server.url}/ui/config").status == 200  # the page's cookie opens the UI
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/ui/sign-in")
    assert page.request.get(f"{server.url}/ui/config").status == 401
    page.close()


def test_training_progress_moves(
    browser: Any,
    server: Server,
    tenant_keys: dict[str, str],
    tmp_path: Path,
) -> None:
    training = tmp_path / "faq.csv"
    training.write_text(TRAINING_CSV)
    page, problems = open_ui(browser, server, tenant_keys["acme"])
    page.get_by_text("Signed in as tenant").wait_for()
    page.get_by_role("tab", name="Train").click()
    page.locator("input[type=file]").first.set_input_files(str(training))
    page.get_by_label("Adapter name").fill("ui-trained")
    page.get_by_text("Advanced hyperparameters").click()
    page.get_by_label("max_steps").fill("4")
    page.get_by_label("max_seq_tokens").fill("256")
    page.get_by_role("button", name="Start training").click()

    bar = page.locator("#train-progress")
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = ""
    while time.monotonic() < deadline and status not in ("succeeded", "failed", "cancelled"):
        if bar.count():
            box = page.locator("[data-status]").first
            status = box.get_attribute("data-status") or ""
            state = (status, int(box.get_attribute("data-step") or 0), int(box.get_attribute("data-total") or 0))
            if not seen or seen[-1] != state:
                seen.append(state)
                if len(seen) == 2:
                    screenshot(page, "ui-train-running")
        page.wait_for_timeout(300)
    screenshot(page, "ui-train-done")
    assert status == "succeeded", seen
    steps = [step for _, step, total in seen if total]
    assert len(set(steps)) >= 2 and steps == sorted(steps), f"the bar should move forward: {seen}"
    assert seen[-1][1] == seen[-1][2] >= 1  # full at the end
    page.get_by_text("probe recall (higher is better)").filter(visible=True).first.wait_for()
    assert problems.errors == []


def test_a_preference_file_offers_dpo(browser: Any, server: Server, tenant_keys: dict[str, str]) -> None:
    pairs = Path(__file__).resolve().parents[2] / "examples" / "preferences" / "sign-off.jsonl"
    page, problems = open_ui(browser, server, tenant_keys["acme"])
    page.get_by_text("Signed in as tenant").wait_for()
    page.get_by_role("tab", name="Train").click()
    dpo = page.get_by_label("Preference (DPO)")
    assert dpo.is_disabled() and not page.get_by_label("beta").is_visible()  # nothing to prefer yet
    page.locator("input[type=file]").first.set_input_files(str(pairs))
    page.get_by_label("beta").wait_for()
    assert dpo.is_checked() and page.get_by_label("sft_weight").is_visible()
    screenshot(page, "ui-train-dpo")
    assert problems.errors == []
