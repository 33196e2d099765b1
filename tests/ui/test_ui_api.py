"""The UI's handlers through ``gradio_client`` against the live server: sign-in, a streamed chat,
a blind compare round with its vote and win-rate table, adapter management, and API errors shown
as the server's own readable messages. What the UI did is checked again over the HTTP API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.integration.conftest import PROMPT, Server, auth, greedy, upload_ok
from tests.integration.helpers import HANDBOOK_QUESTION, set_retrieval, upload_document
from tests.ui.conftest import ui_client

pytestmark = pytest.mark.integration

TOKENS = 8


def assistant_text(chat: list[dict[str, Any]]) -> str:
    """The text of the last message of a Chatbot value, when it is the assistant's."""
    last = chat[-1]
    if last["role"] != "assistant":
        return ""
    return "".join(part.get("text", "") for part in last["content"])


def outputs(job: Any) -> list[Any]:
    """Every intermediate output of a streaming endpoint, then its result (raising its error)."""
    seen = [out for out in job]
    job.result()
    return seen


def test_sign_in_names_the_caller(server: Server, tenant_keys: dict[str, str]) -> None:
    admin = ui_client(server, server.admin_key)
    status, acting = admin.predict(api_name="/sign_in")
    assert "admin" in status and acting["visible"] is True and "acme" in acting["choices"][0]
    tenant = ui_client(server, tenant_keys["acme"])
    status, acting = tenant.predict(api_name="/sign_in")
    assert "tenant **acme**" in status and acting["visible"] is False
    admin.close()
    tenant.close()


def test_a_ui_client_needs_a_key_the_server_accepts(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-swl-not-a-key"}):
        with pytest.raises(Exception, match="401|Unauthorized|Could not"):
            Client(f"{server.url}/ui/", verbose=False, download_files=False, analytics_enabled=False, headers=headers)


def test_chat_answer_streams(ui: Client, server: Server, tenant_keys: dict[str, str]) -> None:
    seen = outputs(ui.submit("base", 0.0, TOKENS, PROMPT, api_name="/chat"))
    texts = [assistant_text(chat) for _, chat, _ in seen]
    growing = [t for i, t in enumerate(texts) if t and t != texts[i - 1]]
    assert len(growing) >= 3, f"the answer should arrive in several pieces: {texts}"
    assert all(later.startswith(earlier) for earlier, later in zip(growing, growing[1:]))
    # The UI shows exactly what the API answers (greedy, same prompt and length).
    expected = greedy(server.openai(tenant_keys["acme"]), "base", max_tokens=TOKENS).choices[0].message.content
    assert growing[-1] == expected
    assert seen[-1][1][0]["content"][0]["text"] == PROMPT and seen[-1][0] == ""


def test_chat_lists_the_sources_retrieval_gave_the_answer(
    ui: Client, http: httpx.Client, tenant_keys: dict[str, str]
) -> None:
    key = tenant_keys["acme"]
    handbook = upload_document(http, key)
    assert set_retrieval(http, key, "acme", {"enabled": True, "files": [handbook], "top_k": 2}).status_code == 200
    try:
        *_, (_, chat, sources) = outputs(ui.submit("base", 0.0, TOKENS, HANDBOOK_QUESTION, api_name="/chat"))
    finally:
        set_retrieval(http, key, "acme", {"enabled": False, "files": []})
        http.delete(f"/v1/files/{handbook}", headers=auth(key))
    assert sources.startswith("**Sources**") and "handbook.md: Returns and warranty" in sources, sources
    assert chat[-1]["role"] == "assistant" and "Sources" not in assistant_text(chat)  # not in the conversation
    *_, (_, _, none) = outputs(ui.submit("base", 0.0, TOKENS, HANDBOOK_QUESTION, api_name="/chat"))
    assert none == ""  # retrieval off: no sources


def test_chat_with_unknown_adapter_shows_the_servers_message(ui: Client) -> None:
    with pytest.raises(AppError, match="The model 'acme/nope' does not exist or you do not have access to it"):
        ui.predict("acme/nope", 0.0, TOKENS, "hello", api_name="/chat")


def test_compare_round_vote_and_win_rate(ui: Client, http: httpx.Client, tenant_keys: dict[str, str]) -> None:
    key = tenant_keys["acme"]
    assert http.patch("/v1/tenants/acme", json={"store_conversations": True}, headers=auth(key)).status_code == 200
    try:
        compare_and_vote(ui, http, key)
    finally:
        http.patch("/v1/tenants/acme", json={"store_conversations": False}, headers=auth(key))


def compare_and_vote(ui: Client, http: httpx.Client, key: str) -> None:
    seen = outputs(ui.submit("base", "acme/support", True, PROMPT, 0.0, 6, api_name="/compare"))
    left_label, left, right_label, right = seen[-1]
    assert left.strip() and right.strip() and left != right, (left, right)
    assert "hidden" in left_label and "hidden" in right_label  # blind: nobody knows which is which yet
    both_partial = [(lhs, rhs) for _, lhs, _, rhs in seen if lhs and rhs and lhs != left and rhs != right]
    assert both_partial, f"both answers should stream in at the same time, not one after the other: {seen}"

    left_label, right_label, table = ui.predict(api_name="/vote_right")
    revealed = {left_label, right_label}
    assert revealed == {"**Left: base**", "**Right: acme/support@1**"} or revealed == {
        "**Left: acme/support@1**",
        "**Right: base**",
    }
    winner = "acme/support@1" if "acme/support@1" in right_label else "base"
    with pytest.raises(AppError, match="already has your vote"):
        ui.predict(api_name="/vote_left")

    votes = http.get("/v1/comparisons", headers=auth(key)).json()["data"]
    assert [(v["vote"], v["blind"], v["tenant"]) for v in votes] == [("right", True, "acme")]
    assert {votes[0]["left_model"], votes[0]["right_model"]} == {"base", "acme/support@1"}
    row = next(r for r in table["data"] if {r[0], r[1]} == {"base", "acme/support@1"})
    model_a, model_b, count, a_wins, b_wins = row[:5]
    assert count == 1 and (a_wins, b_wins) == ((1, 0) if winner == model_a else (0, 1))
    assert ui.predict(api_name="/comparison_stats")["data"] == table["data"]
    # The tenant stores conversations, so the vote is a preference pair in the export: right won.
    export = [json.loads(line) for line in http.get("/v1/feedback/export", headers=auth(key)).text.splitlines()]
    assert {
        "input": {"messages": [{"role": "user", "content": PROMPT}]},
        "preferred_output": [{"role": "assistant", "content": right}],
        "non_preferred_output": [{"role": "assistant", "content": left}],
    } in export


def test_adapter_versions_rollback_delete_and_upload(
    ui: Client, http: httpx.Client, tenant_keys: dict[str, str], lora_v2: Path
) -> None:
    acme = auth(tenant_keys["acme"])
    files = [handle_file(str(lora_v2 / "adapter_config.json")), handle_file(str(lora_v2 / "adapter_model.safetensors"))]
    ui.predict(None, "support", files, api_name="/upload_adapter")
    assert http.get("/v1/adapters/acme/support", headers=acme).json()["current_version"] == 2
    ui.predict("acme/support", 1, api_name="/rollback")
    assert http.get("/v1/adapters/acme/support", headers=acme).json()["current_version"] == 1
    with pytest.raises(AppError, match="Tick 'Yes, delete'"):
        ui.predict("acme/support", 2, False, api_name="/delete_version")
    assert ui.predict("acme/support", 2, True, api_name="/delete_version") is False  # the box unticks itself
    detail = http.get("/v1/adapters/acme/support", headers=acme).json()
    assert [v["version"] for v in detail["versions"]] == [1] and detail["current_version"] == 1


@pytest.mark.parametrize(
    ("api_name", "args", "message"),
    [
        ("/rollback", ("acme/support", 9), "Version 9 of adapter"),
        ("/rollback", ("acme/nope", 1), "acme/nope"),
        ("/delete_adapter", ("globex/private", 1, True), "globex/private"),
        ("/upload_adapter", (None, "x", ["adapter_config.json"]), "Missing file 'adapter_model.safetensors'"),
        ("/upload_adapter", (None, "x", ["adapter_model.bin"]), "Invalid file type"),
        (
            "/upload_adapter",
            (None, "Bad Name", ["adapter_config.json", "adapter_model.safetensors"]),
            "Invalid adapter name",
        ),
        ("/train", (None, "empty.txt", None, "x", "base", "Supervised", *[""] * 14), "empty.txt"),
    ],
)
def test_api_errors_reach_the_user_readably(
    ui: Client, lora_v1: Path, tmp_path: Path, api_name: str, args: tuple, message: str
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")

    def as_file(name: Any) -> Any:
        source = lora_v1 / name if (lora_v1 / name).exists() else tmp_path / name
        return handle_file(str(source))

    args = tuple(
        [as_file(f) for f in a] if isinstance(a, list) else as_file(a) if str(a).endswith(".txt") else a for a in args
    )
    with pytest.raises(AppError) as caught:
        ui.predict(*args, api_name=api_name)
    text = str(caught.value)
    assert message in text and "Traceback" not in text, text


def test_ui_serves_no_file_it_did_not_create(server: Server, http: httpx.Client, tenant_keys: dict[str, str]) -> None:
    for path in (server.data / "swaplora.db", Path("/etc/passwd"), Path(__file__)):
        assert http.get(f"/ui/gradio_api/file={path}").status_code == 401  # no key: nothing at all
        response = http.get(f"/ui/gradio_api/file={path}", headers=auth(tenant_keys["acme"]))
        assert response.status_code in (403, 404), (path, response.status_code)
        assert b"root:" not in response.content and b"SQLite" not in response.content


def test_cancelled_job_is_reported_in_words(
    ui: Client, http: httpx.Client, tenant_keys: dict[str, str], tmp_path: Path
) -> None:
    training = tmp_path / "faq.csv"
    training.write_text("question,answer\nWhen are you open?,Tuesday to Saturday.\n")
    job = ui.submit(
        None, handle_file(str(training)), None, "cancelled-one", "base", "Supervised", *[""] * 14, api_name="/train"
    )
    deadline = time.monotonic() + 120
    while not job.outputs() and not job.done() and time.monotonic() < deadline:
        time.sleep(0.2)  # the first view arrives once the job exists; cancel then acts on that job
    cancelled = ui.predict(api_name="/cancel_job")
    assert "Cancelled: nothing was published." in cancelled and 'data-status="cancelled"' in cancelled
    views = outputs(job)
    assert 'data-status="cancelled"' in views[-1][0]
    jobs = http.get("/v1/fine_tuning/jobs", headers=auth(tenant_keys["acme"])).json()["data"]
    assert [j["status"] for j in jobs if j["suffix"] == "cancelled-one"] == ["cancelled"]
    with pytest.raises(AppError, match="has already ended"):
        ui.predict(api_name="/cancel_job")


def test_chat_shows_the_system_prompt_in_use(ui: Client, http: httpx.Client, server: Server) -> None:
    admin = auth(server.admin_key)
    assert "none set" in ui.predict("base", api_name="/system_prompt")
    prompt = "You are the assistant of Acme Bikes. Answer in one sentence."
    assert http.patch("/v1/tenants/acme", json={"system_prompt": prompt}, headers=admin).status_code == 200
    try:
        assert ui.predict("base", api_name="/system_prompt") == prompt
        assert ui.predict("acme/support", api_name="/system_prompt") == prompt
    finally:
        http.patch("/v1/tenants/acme", json={"system_prompt": None}, headers=admin)


def test_admin_acts_for_the_tenant_it_picks(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str], lora_v1: Path
) -> None:
    admin = ui_client(server, server.admin_key)
    files = [handle_file(str(lora_v1 / "adapter_config.json")), handle_file(str(lora_v1 / "adapter_model.safetensors"))]
    with pytest.raises(AppError, match="must name the tenant"):
        admin.predict(None, "from-admin", files, api_name="/upload_adapter")
    admin.predict("globex", "from-admin", files, api_name="/upload_adapter")
    admin.close()
    listed = http.get("/v1/adapters", headers=auth(tenant_keys["globex"])).json()["data"]
    assert [a["id"] for a in listed if a["name"] == "from-admin"] == ["globex/from-admin"]


def test_rollout_panel_splits_promotes_and_shows_the_scoreboard(
    ui: Client, server: Server, http: httpx.Client, tenant_keys: dict[str, str], lora_v1: Path, lora_v2: Path
) -> None:
    acme = auth(tenant_keys["acme"])
    for lora in (lora_v1, lora_v2):
        upload_ok(http, tenant_keys["acme"], lora, "rollout")
    ui.predict("acme/rollout", "1: 70, 2: 30", api_name="/set_traffic")
    assert http.get("/v1/adapters/acme/rollout", headers=acme).json()["traffic"] == {"1": 70, "2": 30}
    greedy(server.openai(tenant_keys["acme"]), "acme/rollout@2", max_tokens=2)
    table, split = ui.predict("acme/rollout", api_name="/adapter_stats")
    rows = {row[0]: row for row in table["data"]}
    assert split == "1: 70, 2: 30" and rows[2][1] == 30 and rows[2][2] >= 1  # traffic share, requests
    with pytest.raises(AppError, match="sum to 100"):
        ui.predict("acme/rollout", "1: 70, 2: 20", api_name="/set_traffic")
    with pytest.raises(AppError, match="version: percent"):
        ui.predict("acme/rollout", "seventy", api_name="/set_traffic")
    ui.predict("acme/rollout", 2, api_name="/promote")
    detail = http.get("/v1/adapters/acme/rollout", headers=acme).json()
    assert detail["current_version"] == 2 and detail["traffic"] is None
