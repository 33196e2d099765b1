"""A real ``swaplora serve`` for the whole session, and the helpers the integration tests share.

Nothing is mocked: the server is a subprocess started the way a user starts it, on a free port,
with the embedded SmolLM2 base in NF4, a fresh data directory and a random admin key. Tests talk
to it with the official ``openai`` client (chat, models) and with httpx (admin, uploads, raw bad
input). One server serves every test, so tests that change state (uploads, rollbacks) use names
of their own or leave the shared adapters as they found them.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, THREADS, WORKERS, make_lora

MAX_RANK = 16
"""``SWAPLORA_MAX_RANK`` of the test server: the good adapters have rank 8, the too-big one 32."""
READY_TIMEOUT_S = 300.0
PROMPT = "What is the capital of France?"
"""The prompt the greedy comparisons use; the base answers it with several words."""
MAX_TOKENS = 12
"""Completion length of most chats: enough to compare answers, cheap on two CPU cores."""
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"

Files = list[tuple[str, tuple[str, bytes, str]]]


# --------------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    data: Path
    admin_key: str
    log_path: Path
    process: subprocess.Popen
    ready: dict[str, Any] | None = None
    """The body of the first 200 from ``/ready``."""

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return "(no server log)"

    def openai(self, api_key: str) -> openai.OpenAI:
        """The official client against this server; no retries, so every error surfaces at once."""
        return openai.OpenAI(base_url=self.api_url, api_key=api_key, max_retries=0, timeout=300)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(server: Server, log_start: int) -> dict[str, Any] | None:
    """``/ready``'s body once it answers 200; None when the port was taken before the server bound
    it (another test process picked the same free port: start again on another)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if "address already in use" in server.log_path.read_bytes()[log_start:].decode(errors="replace"):
                return None
            pytest.fail(f"swaplora serve exited with {server.process.returncode}; log:\n{server.log()}")
        try:
            response = httpx.get(f"{server.url}/ready", timeout=5)
            if response.status_code == 200:
                return response.json()
            last = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    pytest.fail(f"/ready did not answer 200 within {READY_TIMEOUT_S:.0f}s (last: {last}); log:\n{server.log()}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the server has not stopped within 20 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_server(model_dir: Path, data: Path, admin_key: str, *flags: str, **settings: str) -> Server:
    """Start ``python -m swaplora.cli serve [flags]`` on ``data`` and wait for ``/ready``; ``settings``
    are extra ``SWAPLORA_*`` variables (``MAX_FILE_BYTES="1000"``). The caller stops it.

    The execution plan is fixed to ``dense-fp32`` unless ``settings`` name one: no start-up
    measurement (10-50 s on a busy CPU, per server), the same plan on every machine and run, and fp32
    logits, where a greedy answer does not depend on how its prompt was split into prefills (bf16
    rounding can flip a near tie between a cold prefill and one continuing from the prefix cache)."""
    from adapters.embedding_model import prepare_embedding_model

    embedding = prepare_embedding_model(model_dir.parent)  # beside the base: extracted once, not per server
    settings = {"COMPUTE_DTYPE": "float32", "CPU_WEIGHTS": "dense", "EMBEDDING_MODEL": str(embedding), **settings}
    if WORKERS > 1:  # the cores are shared with the other xdist workers (tests/conftest.py)
        settings.setdefault("TORCH_THREADS", str(THREADS))
    log_path = data.parent / f"{data.name}-server.log"
    for _ in range(3):
        srv = _start(model_dir, data, admin_key, log_path, flags, settings)
        if srv is not None:
            return srv
    log = log_path.read_text(errors="replace")[-4000:]
    pytest.fail(f"swaplora serve found its port taken three times; log:\n{log}")


def _start(
    model_dir: Path, data: Path, admin_key: str, log_path: Path, flags: tuple[str, ...], settings: dict[str, str]
) -> Server | None:
    """One start on a free port (see :func:`start_server`); None when that port was taken meanwhile."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPLORA_")}
    env.update(
        SWAPLORA_DATA=str(data),
        SWAPLORA_ADMIN_KEY=admin_key,
        SWAPLORA_MAX_RANK=str(MAX_RANK),
        SWAPLORA_LOG_LEVEL="info",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        **{f"SWAPLORA_{name}": value for name, value in settings.items()},
    )
    command = [
        sys.executable,
        "-m",
        "swaplora.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        str(model_dir),
        *flags,
    ]
    with open(log_path, "ab") as log_file:
        log_start = log_file.tell()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    srv = Server(url=f"http://127.0.0.1:{port}", data=data, admin_key=admin_key, log_path=log_path, process=process)
    try:
        ready = _wait_ready(srv, log_start)
    except BaseException:
        stop_server(process)
        raise
    if ready is None:
        return None
    srv.ready = ready
    return srv


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failing test that used the session server gets the tail of that server's log in its
    report: a failure seen only in CI (the server errored, cancelled, restarted) can be read there."""
    outcome = yield
    report = outcome.get_result()
    srv = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(srv, Server):
        report.sections.append(("swaplora server log (tail)", srv.log()[-6000:]))


@pytest.fixture(scope="session")
def server(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m swaplora.cli serve`` on a free port with a fresh data dir; stopped at the end."""
    srv = start_server(embedded_model_dir, tmp_path_factory.mktemp("swaplora-data"), secrets.token_hex(16))
    try:
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --------------------------------------------------------------------------------- tenants


@pytest.fixture(scope="session")
def tenant_keys(server: Server, http: httpx.Client) -> dict[str, str]:
    """Tenants ``acme`` and ``globex``, created by the admin over HTTP; their API keys."""
    keys = {}
    for tenant in ("acme", "globex"):
        response = http.post("/v1/tenants", json={"id": tenant}, headers=auth(server.admin_key))
        assert response.status_code == 201, f"{response.status_code} {response.text}"
        body = response.json()
        assert body["id"] == tenant and body["object"] == "tenant"
        assert isinstance(body["api_key"], str) and len(body["api_key"]) >= 16
        keys[tenant] = body["api_key"]
    assert keys["acme"] != keys["globex"]
    return keys


@pytest.fixture(scope="session")
def acme(server: Server, tenant_keys: dict[str, str]) -> openai.OpenAI:
    return server.openai(tenant_keys["acme"])


@pytest.fixture(scope="session")
def globex(server: Server, tenant_keys: dict[str, str]) -> openai.OpenAI:
    return server.openai(tenant_keys["globex"])


# --------------------------------------------------------------------------------- adapters


@pytest.fixture(scope="session")
def lora_v1(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-8 all-linear LoRA for the embedded base with random non-zero A and B."""
    return make_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-v1"), rank=8, seed=1)


@pytest.fixture(scope="session")
def lora_v2(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like :func:`lora_v1` with other random weights: the second version of ``acme/support``."""
    return make_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-v2"), rank=8, seed=2)


def adapter_files(directory: Path, **replace: tuple[str, bytes]) -> Files:
    """The multipart ``files`` of a saved adapter; ``replace`` swaps a slot (config/weights)."""
    parts = {
        "config": (CONFIG, (directory / CONFIG).read_bytes()),
        "weights": (WEIGHTS, (directory / WEIGHTS).read_bytes()),
        **replace,
    }
    return [
        (
            "files",
            (file_name, content, "application/json" if file_name.endswith(".json") else "application/octet-stream"),
        )
        for file_name, content in parts.values()
    ]


def pickled_weights(directory: Path) -> bytes:
    """The adapter's weights as a torch pickle (what ``safe_serialization=False`` would save)."""
    buffer = io.BytesIO()
    torch.save(load_file(directory / WEIGHTS), buffer)
    return buffer.getvalue()


def upload(http: httpx.Client, key: str, files: Files, name: str | None = "support") -> httpx.Response:
    data = {} if name is None else {"name": name}
    return http.post("/v1/adapters", headers=auth(key), data=data, files=files)


def upload_ok(http: httpx.Client, key: str, directory: Path, name: str) -> dict[str, Any]:
    response = upload(http, key, adapter_files(directory), name)
    assert response.status_code == 201, f"{response.status_code} {response.text}"
    return response.json()


@pytest.fixture(scope="session")
def support_v1(http: httpx.Client, tenant_keys: dict[str, str], lora_v1: Path) -> dict[str, Any]:
    """``acme/support`` version 1, uploaded by acme (tests that publish more roll back to it)."""
    return upload_ok(http, tenant_keys["acme"], lora_v1, "support")


@pytest.fixture(scope="session")
def globex_private(http: httpx.Client, tenant_keys: dict[str, str], lora_v2: Path) -> dict[str, Any]:
    """``globex/private``: an adapter acme must never see."""
    return upload_ok(http, tenant_keys["globex"], lora_v2, "private")


def store_snapshot(server: Server) -> list[str]:
    """Every path under ``<data>/adapters`` and ``<data>/tmp``, dot-entries included."""
    paths = []
    for sub in ("adapters", "tmp"):
        root = server.data / sub
        if root.exists():
            paths += sorted(f"{sub}/{p.relative_to(root)}" for p in root.rglob("*"))
    return paths


# --------------------------------------------------------------------------------- chat


def greedy(client: openai.OpenAI, model: str, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS, **extra: Any):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=max_tokens,
        **extra,
    )


@pytest.fixture(scope="session")
def base_answer(acme: openai.OpenAI):
    """The base's greedy, non-streamed answer to :data:`PROMPT`."""
    completion = greedy(acme, "base")
    text = completion.choices[0].message.content
    assert text and len(text.split()) >= 4, f"the base should answer with several words, got {text!r}"
    return completion


# --------------------------------------------------------------------------------- checks


def assert_openai_error(
    response: httpx.Response, status: int | tuple[int, ...], code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``response`` is an error in OpenAI's shape with ``status`` (and ``code``/``param`` when given)."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, f"{response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def assert_healthy(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200, response.text


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of sample ``name{labels}`` in Prometheus text, 0.0 when absent."""
    sample = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metrics(http: httpx.Client) -> str:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


# The bad-input battery's own server and helpers live in tests/integration/bad_input.py.
from tests.integration.bad_input import bad_input_baseline, bad_input_world  # noqa: E402, F401 (fixtures)
