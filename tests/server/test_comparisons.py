"""The comparison store on a real SQLite file and ``/v1/comparisons`` through Starlette, with a
real adapter store and tenant registry: votes, tenant scoping, model checks and pair stats."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.comparisons import ComparisonStore, Preference, VoteTexts, prompt_hash
from server.errors import install_error_handlers
from server.routes import comparisons as comparison_routes
from server.routes import feedback as feedback_routes
from server.settings import Settings
from tests.adapters.helpers import publish
from tests.server.helpers import ADMIN, ADMIN_KEY, assert_error, bearer, real_services


@pytest.fixture
def env(tmp_path: Path) -> SimpleNamespace:
    """A client on the comparison routes; tenants acme and globex; acme/support@1..2, acme/sales@1,
    globex/private@1."""
    settings = Settings(data=tmp_path, admin_key=ADMIN_KEY)
    services = real_services(settings)
    store, tenants = services.store, services.tenants
    app = Starlette(routes=[*comparison_routes.routes, *feedback_routes.routes])
    install_error_handlers(app)
    app.state.services = services
    keys = {t: tenants.create_tenant(t)[1] for t in ("acme", "globex")}
    publish(store, "acme", "support")
    publish(store, "acme", "support")
    publish(store, "acme", "sales")
    publish(store, "globex", "private")
    return SimpleNamespace(
        client=TestClient(app), tenants=tenants, acme=bearer(keys["acme"]), globex=bearer(keys["globex"])
    )


def vote(env: SimpleNamespace, headers: dict[str, str], **body: Any) -> Any:
    payload = {"left_model": "base", "right_model": "acme/support", "prompt": "Hours?", "vote": "left", **body}
    return env.client.post("/v1/comparisons", json=payload, headers=headers)


def test_store_records_lists_and_tallies(tmp_path: Path) -> None:
    store = ComparisonStore(tmp_path / "db.sqlite")
    first = store.record("acme", "base", "acme/a@1", "hello", "left", blind=True)
    store.record("acme", "acme/a@1", "base", "hello", "left", blind=False)  # same pair, sides swapped
    store.record("acme", "base", "acme/a@1", "other", "tie", blind=False)
    store.record("acme", "acme/a@1", "acme/b@1", "x", "both_bad", blind=False)
    store.record("globex", "base", "globex/p@1", "x", "right", blind=False)
    assert first.prompt_sha256 == prompt_hash("hello") and first.blind and first.id.startswith("cmp-")
    assert [c.vote for c in store.list("acme")] == ["both_bad", "tie", "left", "left"]
    assert len(store.list(None)) == 5 and store.list("initech") == [] and len(store.list("acme", limit=2)) == 2
    # Another connection (a restart, another process) sees the same votes.
    assert ComparisonStore(tmp_path / "db.sqlite").list("acme")[-1] == first
    stats = {(s.model_a, s.model_b): s.to_dict() for s in store.stats("acme")}
    pair = stats[("acme/a@1", "base")]
    assert (pair["votes"], pair["model_a_wins"], pair["model_b_wins"], pair["ties"]) == (3, 1, 1, 1)
    assert pair["model_a_win_rate"] == pytest.approx(1 / 3)
    assert stats[("acme/a@1", "acme/b@1")]["both_bad"] == 1
    assert store.stats("acme")[0].votes == 3  # most-voted pair first
    with pytest.raises(ValueError):
        store.record("acme", "base", "acme/a@1", "x", "maybe", blind=False)


def test_vote_is_stored_resolved_and_counted(env: SimpleNamespace) -> None:
    response = vote(env, env.acme, blind=True)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["object"] == "comparison" and body["tenant"] == "acme" and body["blind"] is True
    assert (body["left_model"], body["right_model"]) == ("base", "acme/support@2")
    assert body["prompt_sha256"] == prompt_hash("Hours?") and "prompt" not in body
    assert vote(env, env.acme, left_model="acme/support@1", vote="right").status_code == 201
    listed = env.client.get("/v1/comparisons", headers=env.acme).json()["data"]
    assert [c["id"] for c in listed][-1] == body["id"] and len(listed) == 2
    stats = env.client.get("/v1/comparisons/stats", headers=env.acme).json()["data"]
    assert [(s["model_a"], s["model_b"], s["votes"], s["model_a_wins"], s["model_b_wins"]) for s in stats] == [
        ("acme/support@1", "acme/support@2", 1, 0, 1),
        ("acme/support@2", "base", 1, 0, 1),
    ]


def test_votes_are_tenant_scoped(env: SimpleNamespace) -> None:
    assert vote(env, env.acme).status_code == 201
    assert vote(env, env.globex, right_model="globex/private").status_code == 201
    assert vote(env, ADMIN, right_model="globex/private", tenant="globex", vote="tie").status_code == 201
    assert vote(env, ADMIN, left_model="acme/sales", vote="tie").status_code == 201  # the admin's own
    assert len(env.client.get("/v1/comparisons", headers=env.acme).json()["data"]) == 1
    assert len(env.client.get("/v1/comparisons", headers=env.globex).json()["data"]) == 2
    assert len(env.client.get("/v1/comparisons", headers=ADMIN).json()["data"]) == 4
    globex = env.client.get("/v1/comparisons/stats", params={"tenant": "globex"}, headers=ADMIN).json()["data"]
    assert [(s["votes"], s["ties"]) for s in globex] == [(2, 1)]
    # A tenant can neither read nor vote into another tenant, nor use its adapters.
    foreign = env.client.get("/v1/comparisons", params={"tenant": "globex"}, headers=env.acme).json()["data"]
    assert [c["tenant"] for c in foreign] == ["acme"]
    assert_error(vote(env, env.acme, tenant="globex"), 404)
    assert_error(vote(env, env.acme, right_model="globex/private"), 404, "model_not_found")
    # The admin voting for acme may not bring globex's adapter into acme's tally.
    assert_error(vote(env, ADMIN, tenant="acme", right_model="globex/private"), 404, "model_not_found")
    assert_error(vote(env, ADMIN, tenant="nobody"), 404)
    assert len(env.client.get("/v1/comparisons", headers=ADMIN).json()["data"]) == 4


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"vote": "maybe"}, 400, "vote"),
        ({"right_model": "Acme/Support"}, 400, "right_model"),
        ({"left_model": 3}, 400, "left_model"),
        ({"right_model": "acme/missing"}, 404, "model"),
        ({"right_model": "acme/support@9"}, 404, "model"),
        ({"right_model": "base"}, 400, "right_model"),
        ({"left_model": "acme/support@2", "right_model": "acme/support"}, 400, "right_model"),
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": ["x"]}, 400, "prompt"),
        ({"blind": "yes"}, 400, "blind"),
        ({"colour": "red"}, 400, "colour"),
        ({"left_answer": "only one side"}, 400, "right_answer"),
        ({"left_answer": 3, "right_answer": "b"}, 400, "left_answer"),
        ({"left_answer": "a", "right_answer": "b" * 32_001}, 400, "right_answer"),
    ],
)
def test_bad_votes_are_refused_and_not_stored(env: SimpleNamespace, body: dict, status: int, param: str) -> None:
    error = assert_error(vote(env, env.acme, **body), status)
    assert error["param"] == param
    assert env.client.get("/v1/comparisons", headers=env.acme).json()["data"] == []


def test_missing_fields_auth_and_limits(env: SimpleNamespace) -> None:
    response = env.client.post("/v1/comparisons", json={"left_model": "base"}, headers=env.acme)
    assert assert_error(response, 400)["param"] == "right_model"
    assert_error(env.client.post("/v1/comparisons", content=b"[1]", headers=env.acme), 400, "invalid_json")
    assert_error(env.client.get("/v1/comparisons"), 401, "missing_api_key")
    assert_error(env.client.get("/v1/comparisons/stats", headers=bearer("sk-swl-nope")), 401, "invalid_api_key")
    for limit in ("0", "-1", "x", "1001"):
        assert_error(env.client.get("/v1/comparisons", params={"limit": limit}, headers=env.acme), 400)
    assert env.client.get("/v1/comparisons", params={"limit": "1000"}, headers=env.acme).json()["has_more"] is False
    assert vote(env, env.acme).status_code == 201 and vote(env, env.acme).status_code == 201
    page = env.client.get("/v1/comparisons", params={"limit": "1"}, headers=env.acme).json()
    assert len(page["data"]) == 1 and page["has_more"] is True


def test_store_keeps_texts_only_when_given_and_pairs_decided_votes(tmp_path: Path) -> None:
    store = ComparisonStore(tmp_path / "db.sqlite")
    store.record("acme", "base", "acme/a@1", "Hours?", "right", blind=True, texts=VoteTexts("Hours?", "9-5", "9 to 5"))
    store.record("acme", "base", "acme/a@1", "Where?", "left", blind=False, texts=VoteTexts("Where?", "Oslo", "Rome"))
    store.record("acme", "base", "acme/a@1", "Tie?", "tie", blind=False, texts=VoteTexts("Tie?", "x", "y"))
    store.record("acme", "base", "acme/a@1", "Same?", "left", blind=False, texts=VoteTexts("Same?", "z", "z"))
    store.record("acme", "base", "acme/a@1", "Hash only", "left", blind=False)
    store.record("globex", "base", "globex/p@1", "Theirs", "left", blind=False, texts=VoteTexts("Theirs", "p", "q"))
    assert store.preferences("acme", limit=10) == [
        Preference("Where?", preferred="Oslo", rejected="Rome"),
        Preference("Hours?", preferred="9 to 5", rejected="9-5"),
    ]
    assert store.preferences("acme", limit=1) == [Preference("Where?", "Oslo", "Rome")]
    assert store.preferences("initech", limit=10) == []


def test_vote_texts_are_kept_only_for_tenants_storing_conversations(env: SimpleNamespace) -> None:
    answers = {"left_answer": "We open at nine.", "right_answer": "Nine to five, Monday to Friday."}
    reply = vote(env, env.acme, vote="right", **answers)
    assert reply.status_code == 201 and reply.json()["texts_stored"] is False
    assert env.client.get("/v1/feedback/export", headers=env.acme).text == ""

    env.tenants.update_settings("acme", lambda s: s.model_copy(update={"store_conversations": True}))
    assert vote(env, env.acme, vote="right", **answers).json()["texts_stored"] is True
    assert vote(env, env.acme, vote="tie", **answers).json()["texts_stored"] is True  # kept, but no preference
    assert vote(env, env.acme, vote="left").json()["texts_stored"] is False  # no answers sent
    lines = [json.loads(line) for line in env.client.get("/v1/feedback/export", headers=env.acme).text.splitlines()]
    assert lines == [
        {
            "input": {"messages": [{"role": "user", "content": "Hours?"}]},
            "preferred_output": [{"role": "assistant", "content": answers["right_answer"]}],
            "non_preferred_output": [{"role": "assistant", "content": answers["left_answer"]}],
        }
    ]
    assert env.client.get("/v1/feedback/export", headers=env.globex).text == ""  # acme's votes are acme's
    assert env.client.get("/v1/feedback/export?format=chat", headers=env.acme).text == ""
