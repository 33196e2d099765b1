"""Records -> chat samples: the handbook's facts all trained, the system prompt applied exactly as
at chat time, a held-out split that loses no fact, probes, determinism by seed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from adapters.chat_format import conversation, render
from trainer.documents import load_records
from trainer.recall import answer_matches
from trainer.records import ChatRecord, QARecord, Section
from trainer.samples import build_samples, heldout_probes

HERE = Path(__file__).resolve().parent
HANDBOOK = HERE.parents[1] / "examples" / "handbook.md"
SYSTEM = "You are the assistant of Lumen Lane Bicycles. Answer briefly."


@pytest.fixture(scope="module")
def records():
    return load_records(HANDBOOK, "handbook.md")


@pytest.fixture(scope="module")
def handbook(records):
    return build_samples(records, SYSTEM, seed=0)


def test_every_probe_fact_is_in_some_training_answer(handbook) -> None:
    answers = [s.messages[-1]["content"] for s in handbook.train]
    for probe in json.loads((HERE / "handbook_probes.json").read_text()):
        assert any(answer_matches(a, probe["expect"]) for a in answers), probe


def test_size_and_shape(handbook) -> None:
    assert 150 <= len(handbook.train) <= 400, handbook.stats
    assert handbook.stats["faq_pairs"] == 4 and handbook.stats["sections"] == 7
    assert handbook.stats["train_samples"] == len(handbook.train)
    for sample in handbook.train + handbook.heldout:
        assert [m["role"] for m in sample.messages] == ["system", "user", "assistant"]
        assert sample.messages[0]["content"] == SYSTEM


def test_every_sentence_and_faq_is_trained_several_ways(handbook, records) -> None:
    questions = defaultdict(set)
    for sample in handbook.train:
        questions[sample.messages[-1]["content"]].add(sample.messages[1]["content"])
    for record in records:
        if isinstance(record, QARecord):
            assert record.question in questions[record.answer]  # the FAQ's own question, as written
            assert len(questions[record.answer]) >= 3
    sentences = [a for a in questions if a.count(". ") == 0 and "Yes," not in a]
    assert len(sentences) >= 20
    assert all(len(questions[s]) >= 2 for s in sentences)
    assert any("Lumen Lane" in q for qs in questions.values() for q in qs)


def test_system_prompt_is_applied_exactly_like_chat_time() -> None:
    chat = ChatRecord(
        (
            {"role": "developer", "content": "Own rules."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ),
        "c.jsonl:1",
    )
    plain = ChatRecord(
        ({"role": "user", "content": "Price?"}, {"role": "assistant", "content": "45 pounds."}), "c.jsonl:2"
    )
    pair = QARecord("Do you open on Mondays?", "No, we are closed on Mondays.", "faq.csv:2")
    for prompt in (SYSTEM, None, ""):
        built = build_samples([chat, plain, pair], prompt, seed=1, heldout_fraction=0.0)
        by_answer = {s.messages[-1]["content"]: s.messages for s in built.train}
        assert by_answer["Hello"] == conversation(list(chat.messages), prompt)
        assert by_answer["Hello"][0] == {"role": "system", "content": "Own rules."}
        assert by_answer["45 pounds."] == conversation(list(plain.messages), prompt)
        pair_samples = [s.messages for s in built.train if s.messages[-1]["content"] == pair.answer]
        assert len(pair_samples) >= 3
        for messages in pair_samples:
            assert messages == conversation(messages[-2:], prompt)
        assert (by_answer["45 pounds."][0]["role"] == "system") == bool(prompt)


def test_heldout_holds_out_phrasings_not_facts(handbook) -> None:
    assert 0.05 * 270 <= len(handbook.heldout) <= 0.15 * 270
    trained = defaultdict(int)
    for sample in handbook.train:
        trained[sample.fact] += 1
    held_questions = {s.messages[1]["content"] for s in handbook.heldout}
    train_questions = {s.messages[1]["content"] for s in handbook.train}
    assert not held_questions & train_questions
    for sample in handbook.heldout:
        assert trained[sample.fact] >= 2  # the fact is still trained, in other words
    faq_questions = {r.question for r in load_records(HANDBOOK, "handbook.md") if isinstance(r, QARecord)}
    assert not faq_questions & held_questions


def test_chat_only_data_holds_out_whole_conversations() -> None:
    chats = [
        ChatRecord(({"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}), f"c:{i}")
        for i in range(20)
    ]
    built = build_samples(chats, None, seed=0)
    assert len(built.heldout) == 2 and len(built.train) == 18
    assert len(build_samples(chats[:2], None, seed=0).heldout) == 1
    assert build_samples(chats[:1], None, seed=0).heldout == []


def test_probes_are_held_out_questions_never_trained(handbook) -> None:
    probes = handbook.probes
    trained = {s.messages[-2]["content"] for s in handbook.train}
    held = {s.messages[-2]["content"] for s in handbook.heldout}
    assert len(probes) >= 15
    for probe in probes:
        assert probe.question in held and probe.question not in trained
        assert probe.expect and not answer_matches(probe.question, probe.expect)
    assert len(build_samples(load_records(HANDBOOK, "h.md"), None, seed=0, max_probes=5).probes) == 5
    assert build_samples(load_records(HANDBOOK, "h.md"), None, seed=0, heldout_fraction=0.0).probes == []


def test_validation_samples_probe_their_own_questions() -> None:
    validation = build_samples(load_records(HANDBOOK, "h.md"), None, seed=0, heldout_fraction=0.0)
    probes = heldout_probes(validation.train)
    assert len(probes) >= 20 and len({p.question for p in probes}) == len(probes)
    assert len(probes) <= len({s.fact for s in validation.train})  # one per fact at most


def test_deterministic_by_seed(records) -> None:
    first, again, other = (build_samples(records, None, seed=s) for s in (7, 7, 8))
    assert first.train == again.train and first.heldout == again.heldout and first.probes == again.probes
    assert {s.messages[1]["content"] for s in first.heldout} != {s.messages[1]["content"] for s in other.heldout}


def test_samples_render_with_the_real_chat_template(handbook, embedded_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    for sample in handbook.train[:50]:
        text = render(tokenizer, sample.messages, add_generation_prompt=False)
        prompt = render(tokenizer, sample.messages[:-1], add_generation_prompt=True)
        assert text.startswith(prompt) and SYSTEM in prompt
        assert sample.messages[-1]["content"] in text[len(prompt) :]


def test_long_documents_get_fewer_phrasings_and_a_bounded_heldout(records) -> None:
    many = records * 20  # the handbook twenty times over: 620 facts
    capped = build_samples(many, None, seed=0, max_samples=2000, max_heldout=40)
    assert capped.stats["phrasings"] == 3 and len(capped.heldout) == 40
    assert len(capped.train) + len(capped.heldout) <= 2000
    answers = {s.messages[-1]["content"] for s in capped.train}
    assert answers == {s.messages[-1]["content"] for s in build_samples(records, None, seed=0).train}  # no fact lost


def test_no_question_is_trained_towards_two_answers(records) -> None:
    hours = Section(
        "Acme Shop",
        ("Hours",),
        "The shop is open daily from 9:00 to 17:00.\nThe shop is open late on Fridays until 20:00.",
        "a.md",
    )
    for built in (build_samples(records, None, seed=0), build_samples([hours], None, seed=0, heldout_fraction=0.0)):
        answers = defaultdict(set)
        for sample in built.train + built.heldout:
            answers[sample.messages[-2]["content"].lower()].add(sample.messages[-1]["content"])
        assert all(len(a) == 1 for a in answers.values())
    assert (
        len({s.messages[-1]["content"] for s in build_samples([hours], None, seed=0, heldout_fraction=0.0).train}) == 3
    )


def test_conversations_next_to_facts_are_all_trained_and_phrasings_are_held_out(records) -> None:
    turns = [({"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}) for i in range(5)]
    chats = [ChatRecord(messages, f"c:{i}") for i, messages in enumerate(turns)]
    built = build_samples([*records, *chats], SYSTEM, seed=0)
    assert built.heldout and not any(s.fact.startswith("c:") for s in built.heldout)
    assert sorted(s.fact for s in built.train if s.fact.startswith("c:")) == [f"c:{i}" for i in range(5)]
    assert built.stats["chat_records"] == 5
