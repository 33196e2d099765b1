"""Bad input against a real server, part 3: training files (/v1/files) and fine-tuning jobs.

See ``test_bad_input.py`` for what every case asserts. ``$acme_file`` and ``$globex_file`` are each
tenant's one training file; ``$globex_job`` is globex's job, cancelled when the world was made.
A refused upload must keep nothing (no file row, nothing under files/ or tmp/); a refused job
creation must create no job.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.upload_limits import MULTIPART_SLACK
from tests.integration.bad_input import (
    BAD_INPUT_SETTINGS,
    TRAINING_DOC,
    BadInputWorld,
    Case,
    assert_alive_and_unchanged,
    assert_refused,
    case_params,
    cases_for,
    form,
    streamed,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bad_input_baseline")]

FILE_LIMIT = int(BAD_INPUT_SETTINGS["MAX_FILE_BYTES"])
F, J = "/v1/files", "/v1/fine_tuning/jobs"
OVERLONG = "f" * 5000
PURPOSE = ("purpose", None, b"fine-tune")
SURROGATE = "\ud800"
"""A lone UTF-16 surrogate: valid as a JSON escape, but no text: it cannot be encoded as UTF-8."""


def file_upload(content: bytes = TRAINING_DOC, file_name: str = "notes.md", **fields: str):
    """POST /v1/files's multipart body: ``file`` plus ``purpose=fine-tune`` and ``fields``
    (a field set to ``""`` is left out)."""

    def kwargs(w: BadInputWorld) -> dict[str, Any]:
        data = {k: v for k, v in {"purpose": "fine-tune", **fields}.items() if v != ""}
        return {"data": data, "files": [("file", (file_name, content, "application/octet-stream"))]}

    return kwargs


def two_files(w: BadInputWorld) -> dict[str, Any]:
    return {
        "data": {"purpose": "fine-tune"},
        "files": [("file", ("a.md", TRAINING_DOC, "text/markdown")), ("file", ("b.md", TRAINING_DOC, "text/markdown"))],
    }


U = cases_for("POST", F)
"""A file upload case: POST /v1/files with ``body``."""


OVER = b"# Big\n\n" + b"word " * (FILE_LIMIT // 5)
"""Just over the file limit, well inside the multipart slack: only the file's own size refuses it."""
WAY_OVER = b"# Big\n\n" + b"word " * ((FILE_LIMIT + 2 * MULTIPART_SLACK) // 5)

FILE_CASES = [
    U("json-instead-of-multipart", {"purpose": "fine-tune"}, 415, "unsupported_media_type"),
    U("form-urlencoded", lambda w: {"data": {"purpose": "fine-tune"}}, 415, "unsupported_media_type"),
    U("no-file", form(PURPOSE), param="file"),
    U("file-in-unknown-field", form(PURPOSE, ("other", "x.md", TRAINING_DOC)), param="other"),
    U("file-as-text", form(PURPOSE, ("file", None, b"notes")), param="file"),
    U("empty-file-name", form(PURPOSE, ("file", "", TRAINING_DOC)), param="file"),
    U("two-files", two_files),
    U("missing-purpose", file_upload(purpose=""), param="purpose"),
    U("wrong-purpose", file_upload(purpose="assistants"), param="purpose"),
    U("unknown-field", file_upload(color="red"), param="color"),
    U("file-name-overlong", file_upload(file_name="n" * 300 + ".md"), param="file"),
    U("other-tenant-named", file_upload(tenant="globex"), 404, param="tenant"),
    U("admin-names-no-tenant", file_upload(), param="tenant", key="admin"),
    U("admin-names-unknown-tenant", file_upload(tenant="nope"), 404, param="tenant", key="admin"),
    U("admin-names-traversal-tenant", file_upload(tenant="../acme"), 404, param="tenant", key="admin"),
    U("empty-file", file_upload(b""), code="invalid_file", param="file"),
    U("binary-garbage", file_upload(b"\x00\xff\xfe" * 300, "notes.txt"), code="invalid_file", param="file"),
    U("unsupported-kind", file_upload(b"MZ\x90\x00", "setup.exe"), code="invalid_file", param="file"),
    U("jsonl-of-the-wrong-shape", file_upload(b'{"text": "hi"}\n', "chat.jsonl"), code="invalid_file", param="file"),
    U("over-limit", file_upload(OVER), 413, "upload_too_large"),
    U("declared-over-limit", file_upload(WAY_OVER), 413, "upload_too_large"),
    U("chunked-over-limit", lambda w: streamed(file_upload(WAY_OVER)(w)), 413, "upload_too_large"),
    U("no-key", file_upload(), 401, "missing_api_key", key=None),
    U("publishable-key", file_upload(), 403, "publishable_key_not_allowed", key="pk"),
    Case("get-other-tenants", "GET", f"{F}/$globex_file", "acme", status=404, code="file_not_found"),
    Case("content-of-other-tenants", "GET", f"{F}/$globex_file/content", "acme", status=404, code="file_not_found"),
    Case("delete-other-tenants", "DELETE", f"{F}/$globex_file", "acme", status=404, code="file_not_found"),
    Case("get-unknown", "GET", f"{F}/file-000000000000000000000000", "acme", status=404, code="file_not_found"),
    Case("get-traversal", "GET", f"{F}/..%2F..%2Fswaplora.db", "admin", status=404),
    Case("content-dot-dot", "GET", f"{F}/%2e%2e/content", "admin", status=404, code="file_not_found"),
    Case("get-newline", "GET", f"{F}/%0A", "acme", status=404, code="file_not_found"),
    Case("get-nul", "GET", f"{F}/$acme_file%00", "acme", status=404, code="file_not_found"),
    Case("get-overlong", "GET", f"{F}/{OVERLONG}", "acme", status=404, code="file_not_found"),
    Case("list-limit-negative", "GET", f"{F}?limit=-1", "acme", param="limit"),
    Case("list-limit-zero", "GET", f"{F}?limit=0", "acme", param="limit"),
    Case("list-limit-not-a-number", "GET", f"{F}?limit=ten", "acme", param="limit"),
    Case("list-limit-fraction", "GET", f"{F}?limit=1.5", "acme", param="limit"),
    Case("list-limit-too-big", "GET", f"{F}?limit=10001", "acme", param="limit"),
    Case("list-order-sideways", "GET", f"{F}?order=sideways", "acme", param="order"),
    Case("list-publishable-key", "GET", F, "pk", status=403, code="publishable_key_not_allowed"),
    Case("file-put", "PUT", f"{F}/$acme_file", "acme", status=405),
    Case("file-content-delete", "DELETE", f"{F}/$acme_file/content", "acme", status=405),
]


def job(**changes: Any) -> dict[str, Any]:
    """A valid job request for acme with ``changes`` (a field set to ``...`` is left out)."""
    body = {"model": "base", "training_file": "$acme_file", **changes}
    return {k: v for k, v in body.items() if v is not ...}


def hp(**hyperparameters: Any) -> dict[str, Any]:
    return job(hyperparameters=hyperparameters)


N = cases_for("POST", J)
"""A job creation case: POST /v1/fine_tuning/jobs with ``body``."""


"""A lone surrogate escape is JSON's syntax but no text: the body is refused whole (400 invalid_json)."""

JOB_CASES = [
    N("missing-model", job(model=...), param="model"),
    N("model-not-a-string", job(model=5), param="model"),
    N("model-openai-name", job(model="gpt-4o-mini"), 404, "model_not_found"),
    N("model-of-other-tenant", job(model="globex/private"), 404, "model_not_found"),
    N("model-missing", job(model="acme/nope"), 404, "model_not_found"),
    N("model-lone-surrogate", job(model=SURROGATE), 400, "invalid_json"),
    N("missing-training-file", job(training_file=...), param="training_file"),
    N("training-file-not-a-string", job(training_file=5), param="training_file"),
    N("training-file-empty", job(training_file=""), param="training_file"),
    N("training-file-of-other-tenant", job(training_file="$globex_file"), 404, "file_not_found", "training_file"),
    N("training-file-unknown", job(training_file="file-nope"), 404, "file_not_found", "training_file"),
    N("training-file-lone-surrogate", job(training_file=SURROGATE), 400, "invalid_json"),
    N("validation-file-of-other-tenant", job(validation_file="$globex_file"), 404, "file_not_found", "validation_file"),
    N("suffix-traversal", job(suffix="../x"), code="invalid_suffix", param="suffix"),
    N("suffix-not-a-string", job(suffix=5), code="invalid_suffix", param="suffix"),
    N("suffix-overlong", job(suffix="s" * 64), code="invalid_suffix", param="suffix"),
    N("seed-negative", job(seed=-1), param="seed"),
    N("seed-string", job(seed="1"), param="seed"),
    N("seed-true", job(seed=True), param="seed"),
    N("seed-2-to-the-31", job(seed=2**31), param="seed"),
    N("hyperparameters-not-an-object", job(hyperparameters="fast"), param="hyperparameters"),
    N("n-epochs-zero", hp(n_epochs=0), code="invalid_hyperparameters", param="hyperparameters.n_epochs"),
    N(
        "n-epochs-above-the-ceiling",
        hp(n_epochs=1000),
        code="invalid_hyperparameters",
        param="hyperparameters.n_epochs",
    ),
    N("max-seconds-1e300", hp(max_seconds=1e300), code="invalid_hyperparameters", param="hyperparameters.max_seconds"),
    N(
        "learning-rate-nan",
        hp(learning_rate_multiplier=float("nan")),
        code="invalid_hyperparameters",
        param="hyperparameters.learning_rate_multiplier",
    ),
    N("unknown-hyperparameter", hp(bogus=1), code="invalid_hyperparameters"),
    N("hyperparameter-named-lone-surrogate", hp(**{SURROGATE: 1}), code="invalid_json"),
    N("other-tenant-named", job(tenant="globex"), 404, param="tenant"),
    N("admin-names-no-tenant", job(), param="tenant", key="admin"),
    N("admin-names-tenant-of-wrong-type", job(tenant=5), param="tenant", key="admin"),
    N("no-key", job(), 401, "missing_api_key", key=None),
    N("publishable-key", job(), 403, "publishable_key_not_allowed", key="pk"),
    Case("get-other-tenants", "GET", f"{J}/$globex_job", "acme", status=404, code="job_not_found"),
    Case("cancel-other-tenants", "POST", f"{J}/$globex_job/cancel", "acme", status=404, code="job_not_found"),
    Case("events-of-other-tenants", "GET", f"{J}/$globex_job/events", "acme", status=404, code="job_not_found"),
    Case(
        "event-stream-of-other-tenants",
        "GET",
        f"{J}/$globex_job/events?stream=true",
        "acme",
        status=404,
        code="job_not_found",
    ),
    Case("cancel-an-ended-job", "POST", f"{J}/$globex_job/cancel", "globex", status=409, code="job_already_ended"),
    Case("get-unknown", "GET", f"{J}/ftjob-nope", "acme", status=404, code="job_not_found"),
    Case("get-dot-dot", "GET", f"{J}/%2e%2e", "admin", status=404, code="job_not_found"),
    Case("get-newline", "GET", f"{J}/$globex_job%0A", "globex", status=404, code="job_not_found"),
    Case("cancel-overlong", "POST", f"{J}/{OVERLONG}/cancel", "acme", status=404, code="job_not_found"),
    Case("list-limit-negative", "GET", f"{J}?limit=-1", "acme", param="limit"),
    Case("list-limit-too-big", "GET", f"{J}?limit=101", "acme", param="limit"),
    Case("list-limit-not-a-number", "GET", f"{J}?limit=all", "acme", param="limit"),
    Case("events-limit-zero", "GET", f"{J}/$globex_job/events?limit=0", "globex", param="limit"),
    Case("events-limit-too-big", "GET", f"{J}/$globex_job/events?limit=1001", "globex", param="limit"),
    Case("list-publishable-key", "GET", J, "pk", status=403, code="publishable_key_not_allowed"),
    Case("delete-other-tenants", "DELETE", f"{J}/$globex_job", "acme", status=404, code="job_not_found"),
    Case("delete-unknown", "DELETE", f"{J}/ftjob-nope", "acme", status=404, code="job_not_found"),
    Case("events-post", "POST", f"{J}/$globex_job/events", "globex", status=405),
    Case("cancel-get", "GET", f"{J}/$globex_job/cancel", "globex", status=405),
]


@pytest.mark.parametrize(
    "case",
    case_params(
        [c._replace(id=f"file-{c.id}") for c in FILE_CASES] + [c._replace(id=f"job-{c.id}") for c in JOB_CASES]
    ),
)
def test_refused(bad_input_world: BadInputWorld, case: Case) -> None:
    assert_refused(bad_input_world, case)


@pytest.mark.parametrize("query", ["after=garbage", "after=%0A%00", "after=" + "x" * 3000])
@pytest.mark.parametrize("route", [F, J, f"{J}/$globex_job/events"])
def test_an_unknown_after_cursor_is_an_empty_page(bad_input_world: BadInputWorld, route: str, query: str) -> None:
    """Not a refusal: the documented contract (server.jobs.training_files.FileStore.list_files) is that an
    unknown ``after`` gives an empty page, never an error or the first page again."""
    w = bad_input_world
    path = route.replace("$globex_job", w.ids["$globex_job"])
    response = w.http.get(f"{path}?{query}", headers={"Authorization": f"Bearer {w.keys['globex']}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}


def test_afterwards_the_server_is_alive_and_nothing_changed(
    bad_input_world: BadInputWorld, bad_input_baseline: dict[str, Any]
) -> None:
    assert_alive_and_unchanged(bad_input_world, bad_input_baseline)
