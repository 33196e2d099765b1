"""Retrieval-aware samples: the answer's passage among distractors in the chat-time template,
sometimes left out with the "do not know" answer; other samples untouched; deterministic."""

from __future__ import annotations

from pathlib import Path

from adapters.grounding_template import INSTRUCTION, NOT_IN_PASSAGES
from trainer.documents import read_document
from trainer.passages import document_passages
from trainer.raft import answer_passage, ground_samples
from trainer.samples import Sample

ROOT = Path(__file__).resolve().parents[2]
PASSAGES = [
    ("Shop > Rentals", "City bikes rent for 15 euros a day."),
    ("Shop > Warranty", "New bicycles have a 5-year frame warranty."),
    ("Shop > Hours", "We open at nine and close at six."),
    ("Shop > Pets", "Dogs are welcome in the shop."),
    ("Shop > Payment", "We take cards and cash, not cheques."),
]


def qa(question: str, answer: str, system: bool = True) -> Sample:
    head = [{"role": "system", "content": "Be brief."}] if system else []
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Sample([*head, *turns], fact=answer)


def test_the_answers_passage_is_found_whole_or_by_its_words() -> None:
    assert answer_passage("New bicycles have a 5-year frame warranty.", PASSAGES) == 1
    assert answer_passage("It costs 15 euros a day for a city bike.", PASSAGES) == 0
    assert answer_passage("Completely unrelated words here.", PASSAGES) is None


def test_questions_carry_passages_and_sometimes_lack_the_answer() -> None:
    samples = [
        qa(f"Question {i} about the warranty?", "New bicycles have a 5-year frame warranty.") for i in range(200)
    ]
    grounded = ground_samples(samples, PASSAGES, distractors=2, without_answer=0.25, seed=3)
    assert grounded == ground_samples(samples, PASSAGES, distractors=2, without_answer=0.25, seed=3)
    missing = 0
    for before, after in zip(samples, grounded, strict=True):
        assert after.messages[0] == before.messages[0] and after.fact == before.fact  # system prompt kept
        user, answer = after.messages[1]["content"], after.messages[2]["content"]
        assert user.startswith("Passages:\n\n[1] ") and user.endswith(
            f"{INSTRUCTION}\n\nQuestion: {before.messages[1]['content']}"
        )
        has_right = "5-year frame warranty" in user
        assert answer == (before.messages[2]["content"] if has_right else NOT_IN_PASSAGES)
        assert user.count("\n\n[") == (3 if has_right else 2)  # the answer's passage and 2 distractors
        missing += not has_right
    assert 30 <= missing <= 70  # about a quarter of 200


def test_other_samples_pass_through() -> None:
    chat = Sample([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] * 2)
    unrelated = qa("What is the meaning of life?", "Forty-two, says the guide.", system=False)
    assert ground_samples([chat, unrelated], PASSAGES, seed=0) == [chat, unrelated]


def test_a_real_documents_passages_ground_its_faq_answers() -> None:
    document = read_document(ROOT / "examples" / "handbook.md", "handbook.md")
    passages = [(p["heading"], p["text"]) for p in document_passages(document)]
    sample = qa("How long is the frame warranty?", "New bicycles come with a 5-year warranty on the frame.")
    [grounded] = ground_samples([sample], passages, without_answer=0.0)
    assert "Returns and warranty" in grounded.messages[1]["content"]


def test_a_grounded_job_trains_and_holds_out_grounded_samples(tmp_path: Path) -> None:
    from adapters.hyperparameters import parse
    from adapters.job_spec import InputFile, JobSpec
    from trainer.job import _samples

    def spec(grounded: bool) -> JobSpec:
        return JobSpec.build(
            job_id="ftjob-raft",
            tenant="lumen",
            suffix="handbook",
            base_model_dir=tmp_path,
            adapters_dir=tmp_path / "adapters",
            training_files=[InputFile(ROOT / "examples" / "handbook.md", "handbook.md")],
            grounded=grounded,
        )

    plain, grounded = _samples(spec(False), parse(None)), _samples(spec(True), parse(None))
    assert len(grounded.train) == len(plain.train) and len(grounded.heldout) == len(plain.heldout)
    users = [s.messages[-2]["content"] for s in grounded.train]
    assert not any(u.startswith("Passages:") for u in (s.messages[-2]["content"] for s in plain.train))
    assert sum(u.startswith("Passages:") for u in users) >= len(users) * 0.8  # nearly every question
    assert any(s.messages[-1]["content"] == NOT_IN_PASSAGES for s in grounded.train)
    assert grounded.stats["grounded_passages"] >= 5
    assert grounded.probes == plain.probes  # recall probes ask the adapter alone
