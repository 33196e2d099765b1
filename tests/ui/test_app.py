"""The UI without a model: the Blocks' tabs, the internet-facing Gradio settings as the mounted
app serves them, the CLI's URL rule, and the pure pieces (model choices, hyperparameters, job view).
The mount is real (Starlette + Gradio through TestClient); the API URL points nowhere, which is
how an unreachable server is tested too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import _StaticFiles
from starlette.applications import Starlette
from starlette.testclient import TestClient

from swaplora.cli import build_parser, own_url
from ui.api_client import ApiClient, ApiError
from ui.app import build_ui, mount_ui
from ui.job_view import eval_rows, loss_frame, progress_html
from ui.session import model_choices
from ui.train_tab import DPO, SUPERVISED, hyperparameters, is_preference_file, job_body, offer_methods
from ui.ui_sessions import UiPass, UiSessions

NOWHERE = "http://127.0.0.1:9"
KNOWN_KEY = "sk-swl-known-to-the-gate"
"""A key the gate's cache holds as accepted (the API at NOWHERE cannot be asked): signed-in requests."""


@pytest.fixture(scope="module")
def mounted() -> TestClient:
    sessions = UiSessions()
    sessions.remember(UiPass(key=KNOWN_KEY, user="acme"))
    app = mount_ui(Starlette(), NOWHERE, "/ui", max_file_size=1234567, sessions=sessions)
    with TestClient(app, headers={"Authorization": f"Bearer {KNOWN_KEY}"}) as client:
        yield client


def test_exactly_the_four_tabs() -> None:
    blocks = build_ui(NOWHERE, UiSessions(), "/ui")
    assert [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)] == [
        "Chat",
        "Train",
        "Compare",
        "Adapters",
    ]


def test_internet_settings_as_served(mounted: TestClient) -> None:
    config = mounted.get("/ui/config").json()
    assert config["analytics_enabled"] is False and config["run_history"] is False
    assert config["max_file_size"] == 1234567 and config["mcp_server"] is False and config["pwa"] is False
    assert "gradio" not in config["footer_links"]
    uploads = [c["props"] for c in config["components"] if c["type"] == "file"]
    assert uploads and all(p["file_types"] for p in uploads)  # every upload box names its types
    chatbot = next(c["props"] for c in config["components"] if c["type"] == "chatbot")
    assert chatbot["likeable"] is False and "share" not in chatbot["buttons"]
    # Gradio links these from the site root even under /ui: they must not 404.
    for name in ("manifest.json", "favicon.ico"):
        response = mounted.get(f"/{name}", follow_redirects=False)
        assert response.status_code == 308 and response.headers["location"] == f"/ui/{name}"
        assert mounted.get(f"/{name}").status_code == 200
    assert mounted.get("/ui/gradio_api/file=/etc/passwd").status_code in (403, 404)
    # Nothing registered with gr.set_static_paths but Gradio's own bundled icons.
    gradio_dir = Path(gr.__file__).parent
    assert all(gradio_dir in Path(p).parents for p in _StaticFiles.all_paths), _StaticFiles.all_paths


def test_the_ui_answers_no_other_site(mounted: TestClient) -> None:
    """Gradio reflects any Origin with credentials when the Host is not localhost; not under /ui."""
    foreign = {"Origin": "https://evil.example", "Host": "shop.example"}
    response = mounted.get("/ui/config", headers=foreign)
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers
    preflight = mounted.options("/ui/gradio_api/upload", headers={**foreign, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers


def test_unreachable_server_is_a_readable_error() -> None:
    async def call() -> None:
        async with ApiClient(NOWHERE, "sk-swl-x") as api:
            await api.me()

    with pytest.raises(ApiError) as caught:
        asyncio.run(call())
    assert caught.value.text == f"Cannot reach the API server at {NOWHERE}." and caught.value.code == "connection_error"
    assert ApiError("Unexpected file '<img src=x>'.").message == "Unexpected file '&lt;img src=x&gt;'."


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:80"),
        ("::", "http://[::1]:80"),
        ("10.1.2.3", "http://10.1.2.3:80"),
        ("fe80::1", "http://[fe80::1]:80"),
    ],
)
def test_serve_points_the_ui_at_its_own_url(host: str, url: str) -> None:
    assert own_url(host, 80) == url


def test_cli_ui_and_no_ui_flags() -> None:
    args = build_parser().parse_args(["ui", "--api-url", "http://h:8000", "--port", "7000"])
    assert (args.api_url, args.port, args.host) == ("http://h:8000", 7000, "127.0.0.1")
    assert build_parser().parse_args(["serve", "--no-ui"]).no_ui is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ui"])  # --api-url is required


def test_model_choices_list_every_version() -> None:
    adapters = [
        {
            "id": "acme/support",
            "current_version": 2,
            "versions": [{"version": 2, "model": "acme/support@2"}, {"version": 1, "model": "acme/support@1"}],
        }
    ]
    assert [value for _, value in model_choices(adapters)] == [
        "base",
        "acme/support",
        "acme/support@1",
        "acme/support@2",
    ]
    assert ("acme/support@2 (current)", "acme/support@2") in model_choices(adapters)


def test_only_changed_hyperparameters_are_sent() -> None:
    values = {
        "n_epochs": "auto",
        "learning_rate_multiplier": "2",
        "batch_size": " ",
        "lora_rank": "16",
        "lora_alpha": "auto",
        "lora_dropout": "0.0",
        "learning_rate": "1e-4",
        "max_seq_tokens": "1024",
        "warmup_ratio": "0.05",
        "max_seconds": "auto",
        "max_steps": "3",
        "heldout_fraction": "0.10",
    }
    assert hyperparameters(values) == {
        "learning_rate_multiplier": 2,
        "learning_rate": 1e-4,
        "max_steps": 3,
        "heldout_fraction": 0.1,
    }
    with pytest.raises(gr.Error, match="max_steps"):
        hyperparameters({**values, "max_steps": "many"})


def test_job_view() -> None:
    running = {"id": "ftjob-1", "status": "running", "progress": {"step": 3, "total_steps": 12}}
    assert 'value="3" max="12"' in progress_html(running) and "step 3 of 12" in progress_html(running)
    failed = {"id": "ftjob-1", "status": "failed", "progress": None, "error": {"message": "no <text>"}}
    assert "Failed: no &lt;text&gt;" in progress_html(failed)
    events = [
        {"data": {"step": 2, "train_loss": 2.5}},
        {"data": {"step": 1, "train_loss": 3.0}},
        {"data": {"stage": "before", "eval_loss": 3.1, "probe_recall": 0.0}},
        {"data": None},
    ]
    assert loss_frame(events).to_dict("list") == {"step": [1, 2], "train_loss": [3.0, 2.5]}
    done = {"metrics": {"eval_loss_after": 1.25, "probe_recall_after": 0.5}}
    assert eval_rows(done, events) == [
        ["eval loss (lower is better)", "3.1000", "1.2500"],
        ["probe recall (higher is better)", "0%", "50%"],
    ]


def test_dpo_is_offered_for_a_preference_file_and_sent_as_openais_method(tmp_path: Path) -> None:
    pairs = Path(__file__).resolve().parents[2] / "examples" / "preferences" / "sign-off.jsonl"
    chat = tmp_path / "chat.jsonl"
    chat.write_text('\n{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
    assert is_preference_file(str(pairs)) and not is_preference_file(str(chat)) and not is_preference_file(None)
    method, fields = offer_methods(str(pairs))
    assert (method.value, method.interactive, fields.visible) == (DPO, True, True)
    method, fields = offer_methods(str(chat))
    assert (method.value, method.interactive, fields.visible) == (SUPERVISED, False, False)
    assert job_body(SUPERVISED, {"n_epochs": 2}, {"beta": "0.5", "sft_weight": "auto"}) == {
        "hyperparameters": {"n_epochs": 2}
    }
    assert job_body(DPO, {"n_epochs": 2}, {"beta": "0.5", "sft_weight": "auto"}) == {
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "beta": 0.5}}}
    }
    dpo_job = {"method": {"type": "dpo"}, "metrics": {"preference_accuracy_after": 1.0, "reward_margin_after": 4.9}}
    events = [{"data": {"stage": "before", "eval_loss": 0.6931, "preference_accuracy": 0.0, "reward_margin": 0.0}}]
    assert eval_rows(dpo_job, events) == [
        ["DPO loss (lower is better)", "0.6931", "–"],
        ["preference accuracy (higher is better)", "0%", "100%"],
        ["reward margin (higher is better)", "0.000", "4.900"],
    ]
