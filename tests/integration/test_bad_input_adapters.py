"""Bad input against a real server, part 2: adapters (upload, list, get, rollback, delete, versions).

See ``test_bad_input.py`` for what every case asserts. Uploads go to ``acme`` (which has
``acme/support`` versions 1 and 2); a refused upload must leave the adapter store and the upload
temp dir exactly as they were. The control, the same files under a good name, is the world's own
setup: it uploads them as ``acme/support`` and ``globex/private``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from server.upload_limits import MULTIPART_SLACK
from tests.conftest import make_lora
from tests.integration.bad_input import (
    BAD_INPUT_SETTINGS,
    BadInputWorld,
    Case,
    assert_alive_and_unchanged,
    assert_refused,
    case_params,
    cases_for,
    form,
    multipart_raw,
    streamed,
)
from tests.integration.conftest import (
    CONFIG,
    MAX_RANK,
    WEIGHTS,
    adapter_files,
    pickled_weights,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bad_input_baseline")]

UPLOAD_LIMIT = int(BAD_INPUT_SETTINGS["MAX_UPLOAD_BYTES"])
OTHER_ARCH: dict[str, Path] = {}
"""The other-architecture adapter, made once by the module's fixture (see :func:`other_arch`)."""


@pytest.fixture(scope="module", autouse=True)
def other_arch(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A valid PEFT LoRA, but for a 2-layer Llama of hidden size 64, not the served base."""
    OTHER_ARCH["dir"] = make_lora(tiny_model_dir, tmp_path_factory.mktemp("lora-other-arch"), rank=2, seed=3)


def upload(name: str | None = "bad", files=None, **fields: str):
    """An adapter upload: ``files`` (a function of the world) or the good adapter's two files."""

    def kwargs(w: BadInputWorld) -> dict[str, Any]:
        data = {**({} if name is None else {"name": name}), **fields}
        return {"data": data, "files": files(w) if files else adapter_files(w.lora)}

    return kwargs


def part(file_name: str, content: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (file_name, content, "application/octet-stream"))


def config_with(**changes: Any):
    """The good adapter with its adapter_config.json changed (a value of ``...`` removes the key)."""

    def files(w: BadInputWorld):
        config = {**json.loads((w.lora / CONFIG).read_bytes()), **changes}
        text = json.dumps({k: v for k, v in config.items() if v is not ...}).encode()
        return adapter_files(w.lora, config=(CONFIG, text))

    return upload(files=files)


def config_bytes(content: bytes):
    return upload(files=lambda w: adapter_files(w.lora, config=(CONFIG, content)))


def weights_bytes(content: bytes, file_name: str = WEIGHTS):
    return upload(files=lambda w: adapter_files(w.lora, weights=(file_name, content)))


def good_files(*extra: tuple[str, bytes], drop: str | None = None):
    """The good adapter's files, without ``drop`` and with ``extra`` (file name, content) parts."""

    def files(w: BadInputWorld):
        return [p for p in adapter_files(w.lora) if p[1][0] != drop] + [part(n, c) for n, c in extra]

    return upload(files=files)


U = cases_for("POST", "/v1/adapters")
"""An upload case: POST /v1/adapters with ``body``."""


HUGE_HEADER = struct.pack("<Q", 2**62) + b"{}"
"""A safetensors file whose header claims 4 EiB."""
JUNK = b"\x00garbage" * 64

UPLOAD_CASES = [
    U("json-instead-of-multipart", {"name": "bad"}, 415, "unsupported_media_type"),
    U("form-urlencoded", lambda w: {"data": {"name": "bad"}}, 415, "unsupported_media_type"),
    U("multipart-without-boundary", multipart_raw(b"xx", "multipart/form-data")),
    U("multipart-garbage", multipart_raw(b"garbage", "multipart/form-data; boundary=zzz")),
    U("no-files", form(("name", None, b"bad")), param="files"),
    U("file-in-unknown-field", form(("name", None, b"bad"), ("other", "x.txt", b"x")), param="other"),
    U("files-as-text", form(("name", None, b"bad"), ("files", None, b"x")), param="files"),
    U("name-as-a-file", form(("name", "name.txt", b"bad")), param="name"),
    U("config-only", good_files(drop=WEIGHTS), param="files"),
    U("config-twice", good_files((CONFIG, b"{}"), drop=WEIGHTS), param="files"),
    U("three-files", good_files(("README.md", b"# hi"))),
    U("unexpected-file-name", good_files(("../evil.json", b"{}"), drop=CONFIG), param="files"),
    U("file-name-with-newline", good_files((CONFIG + "\n", b"{}"), drop=CONFIG), param="files"),
    U("empty-file-name", form(("name", None, b"bad"), ("files", "", b"{}")), param="files"),
    U("missing-name", upload(name=None), param="name"),
    U("name-path-traversal", upload(name="../x"), code="invalid_id", param="name"),
    U("name-upper-case", upload(name="Support"), code="invalid_id", param="name"),
    U("name-newline", upload(name="support\n"), code="invalid_id", param="name"),
    U("name-unicode", upload(name="süpport"), code="invalid_id", param="name"),
    U("name-overlong", upload(name="a" * 64), code="invalid_id", param="name"),
    U("unknown-field", upload(color="red"), param="color"),
    U("too-many-fields", upload(a="1", b="2", c="3", d="4")),
    U("text-field-over-part-limit", upload(name="a" * (64 * 1024 + 1))),
    U("other-tenant-named", upload(tenant="globex"), 404, param="tenant"),
    U("admin-names-no-tenant", upload(), param="tenant", key="admin"),
    U("admin-names-unknown-tenant", upload(tenant="nope"), 404, param="tenant", key="admin"),
    U("no-key", upload(), 401, "missing_api_key", key=None),
    U("wrong-key", upload(), 401, "invalid_api_key", key="bad"),
    U("publishable-key", upload(), 403, "publishable_key_not_allowed", key="pk"),
    # the files' content
    U(
        "pickle-weights",
        upload(files=lambda w: adapter_files(w.lora, weights=("adapter_model.bin", pickled_weights(w.lora)))),
        code="only_safetensors",
        param="files",
    ),
    U("garbage-weights", weights_bytes(JUNK), code="invalid_adapter", param=WEIGHTS),
    U("empty-weights", weights_bytes(b""), code="invalid_adapter", param=WEIGHTS),
    U("weights-header-claims-4-eib", weights_bytes(HUGE_HEADER), code="invalid_adapter", param=WEIGHTS),
    U("config-not-json", config_bytes(b"{not json"), code="invalid_adapter", param=CONFIG),
    U("config-a-list", config_bytes(b"[]"), code="invalid_adapter", param=CONFIG),
    U("config-not-utf8", config_bytes(b'{"r": "\xff"}'), code="invalid_adapter", param=CONFIG),
    U(
        "config-deeply-nested",
        config_bytes(b'{"r": ' + b"[" * 30000 + b"]" * 30000 + b"}"),
        code="invalid_adapter",
        param=CONFIG,
    ),
    U("config-not-lora", config_with(peft_type="PREFIX_TUNING"), code="invalid_adapter", param="peft_type"),
    U("config-rank-above-max", config_with(r=MAX_RANK * 2), code="invalid_adapter", param="r"),
    U("config-rank-true", config_with(r=True), code="invalid_adapter", param="r"),
    U("config-rank-not-the-weights", config_with(r=4), code="invalid_adapter", param=WEIGHTS),
    U("config-alpha-nan", config_with(lora_alpha=float("nan")), code="invalid_adapter", param="lora_alpha"),
    U("config-dora", config_with(use_dora=True), code="invalid_adapter", param="use_dora"),
    U("other-architecture", upload(files=lambda w: adapter_files(OTHER_ARCH["dir"])), code="invalid_adapter"),
    # sizes: the declared length, the running count of a chunked body, and each file's own size
    U("declared-over-limit", weights_bytes(JUNK * (UPLOAD_LIMIT // len(JUNK) + 200)), 413, "upload_too_large"),
    U(
        "chunked-over-limit",
        lambda w: streamed(weights_bytes(JUNK * (UPLOAD_LIMIT // len(JUNK) + 200))(w)),
        413,
        "upload_too_large",
    ),
    U(
        "files-over-limit-inside-slack",
        weights_bytes(b"\0" * (UPLOAD_LIMIT + MULTIPART_SLACK // 2)),
        413,
        "upload_too_large",
    ),
]

A = "/v1/adapters"
MANAGE_CASES = [
    Case("list-no-key", "GET", A, None, status=401, code="missing_api_key"),
    Case("list-publishable-key", "GET", A, "pk", status=403, code="publishable_key_not_allowed"),
    Case("get-other-tenants", "GET", f"{A}/globex/private", "acme", status=404, code="adapter_not_found"),
    Case("get-missing", "GET", f"{A}/acme/nope", "acme", status=404, code="adapter_not_found"),
    Case("get-dot-dot-name", "GET", f"{A}/acme/%2e%2e", "acme", status=404, code="adapter_not_found"),
    Case("get-dot-dot-both", "GET", f"{A}/%2e%2e/%2e%2e", "admin", status=404, code="adapter_not_found"),
    Case("get-newline", "GET", f"{A}/acme/sup%0Aport", "acme", status=404, code="adapter_not_found"),
    Case("get-nul", "GET", f"{A}/acme/support%00", "acme", status=404, code="adapter_not_found"),
    Case("get-unicode", "GET", f"{A}/acme/s%C3%BCpport", "acme", status=404, code="adapter_not_found"),
    Case("get-overlong", "GET", f"{A}/acme/{'a' * 5000}", "acme", status=404, code="adapter_not_found"),
    Case("delete-other-tenants", "DELETE", f"{A}/globex/private", "acme", status=404, code="adapter_not_found"),
    Case("delete-missing", "DELETE", f"{A}/acme/nope", "acme", status=404, code="adapter_not_found"),
    Case("delete-publishable-key", "DELETE", f"{A}/acme/support", "pk", status=403, code="publishable_key_not_allowed"),
    Case(
        "rollback-other-tenants",
        "POST",
        f"{A}/globex/private/rollback",
        "acme",
        {"version": 1},
        404,
        "adapter_not_found",
    ),
    Case(
        "rollback-missing-version",
        "POST",
        f"{A}/acme/support/rollback",
        "acme",
        {"version": 99},
        404,
        "adapter_not_found",
    ),
    Case(
        "rollback-huge-version",
        "POST",
        f"{A}/acme/support/rollback",
        "acme",
        {"version": 10**30},
        404,
        "adapter_not_found",
    ),
    Case("rollback-version-zero", "POST", f"{A}/acme/support/rollback", "acme", {"version": 0}, param="version"),
    Case("rollback-version-string", "POST", f"{A}/acme/support/rollback", "acme", {"version": "1"}, param="version"),
    Case("rollback-version-true", "POST", f"{A}/acme/support/rollback", "acme", {"version": True}, param="version"),
    Case("rollback-version-float", "POST", f"{A}/acme/support/rollback", "acme", {"version": 1.0}, param="version"),
    Case("rollback-version-null", "POST", f"{A}/acme/support/rollback", "acme", {"version": None}, param="version"),
    Case("rollback-no-version", "POST", f"{A}/acme/support/rollback", "acme", {}, param="version"),
    Case("rollback-no-key", "POST", f"{A}/acme/support/rollback", None, {"version": 1}, 401, "missing_api_key"),
    Case(
        "delete-version-missing",
        "DELETE",
        f"{A}/acme/support/versions/99",
        "acme",
        status=404,
        code="adapter_not_found",
    ),
    Case("delete-version-zero", "DELETE", f"{A}/acme/support/versions/0", "acme", status=404, code="adapter_not_found"),
    Case(
        "delete-version-huge",
        "DELETE",
        f"{A}/acme/support/versions/{10**30}",
        "acme",
        status=404,
        code="adapter_not_found",
    ),
    Case("delete-version-negative", "DELETE", f"{A}/acme/support/versions/-1", "acme", status=404),
    Case("delete-version-not-a-number", "DELETE", f"{A}/acme/support/versions/one", "acme", status=404),
    Case(
        "delete-version-other-tenants",
        "DELETE",
        f"{A}/globex/private/versions/1",
        "acme",
        status=404,
        code="adapter_not_found",
    ),
    Case("adapters-put", "PUT", A, "acme", status=405),
    Case("adapter-patch-unknown-field", "PATCH", f"{A}/acme/support", "acme", {"version": 1}, 400, param="version"),
    Case("rollback-get", "GET", f"{A}/acme/support/rollback", "acme", status=405),
]


@pytest.mark.parametrize("case", case_params(UPLOAD_CASES + MANAGE_CASES))
def test_refused(bad_input_world: BadInputWorld, case: Case) -> None:
    assert_refused(bad_input_world, case)


def test_afterwards_the_server_is_alive_and_nothing_changed(
    bad_input_world: BadInputWorld, bad_input_baseline: dict[str, Any]
) -> None:
    assert_alive_and_unchanged(bad_input_world, bad_input_baseline)
