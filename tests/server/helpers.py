"""What the server tests share: real services and route clients without a model, and the engine's
test kit on the tiny random Llama.

:func:`real_services` builds the same :class:`server.services.Services` the app builds (every
store real, on ``settings.data``), with no base, engine or runner: routes that need the model
answer 503 after their own checks, as on a server still loading. :func:`make_client` puts the
management, widget and chat routes on them behind the real CORS middleware and error handlers.

The engine kit: :class:`Collector` gathers one request's events, :func:`fp32_base` loads a model
where batching must be exact, :func:`reference` is plain PEFT's greedy answer to compare with,
:func:`wait_until` polls with a deadline (a test fails, never hangs), and the batch-size
readers go through the metrics registry's public API.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from adapters.base_model import LoadedBase, linear_shapes, load_tokenizer, spec_for
from server.engine.requests import Finished, TextDelta
from server.errors import install_error_handlers
from server.metrics import Metrics
from server.routes import adapters as adapter_routes
from server.routes import chat as chat_routes
from server.routes import tenant_keys as key_routes
from server.routes import tenants as tenant_routes
from server.routes import widget as widget_routes
from server.services import Services
from server.settings import Settings
from server.tenancy.cors import TenantCORSMiddleware
from tests.adapters.helpers import TINY_LINEAR_SHAPES
from tests.conftest import ROOT

UNSET_NEWER_LIMITS = {
    "storage_bytes": None,
    "adapters": None,
    "adapter_versions": None,
    "files": None,
    "comparisons": None,
    "batch_rows": None,
}
"""The quota and batch-row fields of limits nobody set (an operator's JSON default of ceilings replaces the built-in
one whole: quotas it leaves out are unlimited)."""


def real_services(settings: Settings, **fields: Any) -> Services:
    """Every store real under ``settings.data`` (as the app opens them); ``fields`` set the rest
    (``base``, ``model_dir``...)."""
    return Services.on_disk(settings, **fields)


# ------------------------------------------------------------------------------- route clients

HANDBOOK = (ROOT / "examples" / "handbook.md").read_bytes()
"""A real training document (the fixtures' upload)."""
ADMIN_KEY = "admin-test-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SITE = "https://shop.example"
"""The origin a test tenant allows for its widget."""
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
"""The smallest chat body; without a model it gets 503 ``model_loading`` once it passed every check."""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_client(data: Path, base: Any = None, **settings: Any) -> TestClient:
    """A TestClient on the management, widget and chat routes (behind the CORS middleware) with a
    real store and registry under ``data`` and no engine (chat answers 503 after its checks)."""
    config = Settings(data=data, admin_key=settings.pop("admin_key", ADMIN_KEY), **settings)
    app = Starlette(
        routes=[
            *tenant_routes.routes,
            *key_routes.routes,
            *adapter_routes.routes,
            *widget_routes.routes,
            *chat_routes.routes,
        ],
        middleware=[Middleware(TenantCORSMiddleware)],
    )
    install_error_handlers(app)
    app.state.services = real_services(config, base=base)
    return TestClient(app)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an OpenAI-shaped error with this status (and code); return its fields."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


# ------------------------------------------------------------------------------- adapter uploads

BASE = SimpleNamespace(
    spec=SimpleNamespace(hash="b" * 64, chat_template_hash="c" * 64),
    linear_shapes=TINY_LINEAR_SHAPES,
)
"""A stand-in for the loaded base: what the upload route checks an adapter against."""
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def adapter_files(directory: Path, **replace: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart ``files`` list for a saved adapter; ``replace`` swaps a file's bytes."""
    contents = {CONFIG: (directory / CONFIG).read_bytes(), WEIGHTS: (directory / WEIGHTS).read_bytes(), **replace}
    return [("files", (file_name, content, "application/octet-stream")) for file_name, content in contents.items()]


# ------------------------------------------------------------------------------- the engine

WAIT_S = 60.0
"""Deadline of every wait on the engine: generous for two busy CPU cores; only a hang reaches it."""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.005)


class Collector:
    """Gathers one request's events (``n`` choices: ``texts``, ``ends`` and ``logprobs`` by index)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.pieces: list[str] = []
        self.texts: dict[int, str] = {}
        self.logprobs: dict[int, list] = {}
        self.ends: dict[int, Finished] = {}
        self.finished: Finished | None = None
        self.done = threading.Event()

    def __call__(self, event) -> None:
        self.logprobs.setdefault(event.index, []).extend(event.logprobs)
        if isinstance(event, TextDelta):
            if event.index == 0:
                self.pieces.append(event.text)
            self.texts[event.index] = self.texts.get(event.index, "") + event.text
        else:
            self.ends[event.index] = event
            self.finished = self.ends.get(0, event)
            if len(self.ends) == self.n:
                self.done.set()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def wait(self) -> Finished:
        assert self.done.wait(60), "request did not finish"
        return self.finished

    def wait_started(self, timeout: float = WAIT_S) -> None:
        """Until the request's first text arrives (it holds a batch row from then on); fail if it
        ends first or nothing comes within ``timeout``."""
        wait_until(lambda: bool(self.pieces) or self.done.is_set(), "the request's first text", timeout)
        assert self.pieces, f"the request ended before any text: {self.finished}"


def fp32_base(model_dir: Path) -> LoadedBase:
    """The tiny model unquantized in fp32, where batching must be exact."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return LoadedBase(
        model, tokenizer, spec_for(model_dir, tokenizer), linear_shapes(model), torch.device("cpu"), 512, frozenset()
    )


def started_fp32_engine(model_dir: Path, **options: Any):
    """A running engine on the tiny fp32 model whose tokenizer's EOS ends rows (stop it after)."""
    from server.engine.step_loop import Engine

    base = fp32_base(model_dir)
    engine = Engine(dataclasses.replace(base, eos_token_ids=frozenset({base.tokenizer.eos_token_id})), **options)
    engine.start()
    return engine


def prompt_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(rendered, add_special_tokens=False).input_ids


def reference(model_dir: Path, adapter: Path | None, ids: list[int], max_tokens: int) -> list[int]:
    """Plain transformers (and PEFT for ``adapter``) greedy: the tokens the engine must produce."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).eval()
    inputs = torch.tensor([ids])
    out = model.generate(
        input_ids=inputs,
        attention_mask=torch.ones_like(inputs),
        max_new_tokens=max_tokens,
        min_new_tokens=max_tokens,
        do_sample=False,
    )
    return out[0, len(ids) :].tolist()


def decode_steps(metrics: Metrics) -> float:
    """How many decode steps ran (observations of the batch-size histogram)."""
    return metrics.registry.get_sample_value("swaplora_batch_size_count") or 0.0


def batched_steps(metrics: Metrics) -> float:
    """How many decode steps ran with two rows or more (observations above the histogram's ``le=1`` bucket)."""
    single = metrics.registry.get_sample_value("swaplora_batch_size_bucket", {"le": "1.0"}) or 0.0
    return decode_steps(metrics) - single


def counter_value(metrics: Metrics, name: str) -> float:
    """The value of counter ``name`` (as exported, with ``_total``); 0.0 before its first increment."""
    return metrics.registry.get_sample_value(name) or 0.0


# ------------------------------------------------------------------------------- fine-tuning jobs


def create(api: SimpleNamespace, headers: dict | None = None, **body: object):
    body = {"model": "base", "training_file": api.file["acme"], **body}
    return api.client.post("/v1/fine_tuning/jobs", headers=headers or api.acme, json=body)


def wait_ended(api: SimpleNamespace, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=api.acme).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    pytest.fail(f"{job_id} did not end")
