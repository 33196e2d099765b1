"""Retrieval-aware samples: about half the questions asked with the passages chat would give
(every passage of a small document, or the answer's among distractors, half of them like the
question), sometimes without the answer's passage and then answered "do not know"; questions the
documents do not answer asked with the passages and answered "do not know"; other samples
untouched; deterministic; and a grounded job's rows hold the passages once per row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from adapters.grounding_context import passage_budget, passage_cost
from adapters.grounding_template import HEADER, INSTRUCTION, NOT_IN_PASSAGES
from trainer.documents import load_records, read_document
from trainer.out_of_scope import unanswered
from trainer.passages import document_passages
from trainer.raft import abstention_samples, answer_passage, ground_samples, is_grounded
from trainer.samples import Sample, build_samples
from trainer.supervised_recipe import SupervisedRecipe

ROOT = Path(__file__).resolve().parents[2]
PASSAGES = [
    ("Shop > Rentals", "City bikes rent for 15 euros a day."),
    ("Shop > Warranty", "New bicycles have a 5-year frame warranty."),
    ("Shop > Hours", "We open at nine and close at six."),
    ("Shop > Pets", "Dogs are welcome in the shop."),
    ("Shop > Payment", "We take cards and cash, not cheques."),
]
WARRANTY = "New bicycles have a 5-year frame warranty."


def words(passage: tuple[str, str]) -> int:
    return len(f"{passage[0]} {passage[1]}".split())


def qa(question: str, answer: str, system: bool = True) -> Sample:
    head = [{"role": "system", "content": "Be brief."}] if system else []
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Sample([*head, *turns], fact=answer)


def test_the_answers_passage_is_found_whole_or_by_its_words() -> None:
    assert answer_passage(WARRANTY, PASSAGES) == 1
    assert answer_passage("It costs 15 euros a day for a city bike.", PASSAGES) == 0
    assert answer_passage("Completely unrelated words here.", PASSAGES) is None


def numbers(user: str) -> list[int]:
    """Which of PASSAGES a grounded question carries, in order."""
    return [i for i, (_, text) in enumerate(PASSAGES) if text in user]


def test_search_mode_the_answer_among_distractors_in_document_order() -> None:
    samples = [qa(f"Question {i} about the warranty?", WARRANTY) for i in range(200)]
    grounded = ground_samples(samples, PASSAGES, words, 20, share=1.0, distractors=2, without_answer=0.25, seed=3)
    assert grounded == ground_samples(
        samples, PASSAGES, words, 20, share=1.0, distractors=2, without_answer=0.25, seed=3
    )
    missing = 0
    for before, after in zip(samples, grounded, strict=True):
        assert after.messages[0] == before.messages[0] and after.fact == before.fact  # system prompt kept
        user, answer = after.messages[1]["content"], after.messages[2]["content"]
        assert user.startswith(HEADER + "[1] ") and user.endswith(
            f"{INSTRUCTION}\n\nQuestion: {before.messages[1]['content']}"
        )
        carried = numbers(user)
        assert carried == sorted(carried)
        assert answer == (WARRANTY if 1 in carried else NOT_IN_PASSAGES)
        assert len(carried) == (3 if 1 in carried else 2)  # the answer's passage and 2 distractors
        missing += 1 not in carried
    assert 30 <= missing <= 70  # about a quarter of 200


def test_search_mode_distractors_are_half_like_the_question_half_random() -> None:
    """As chat's search would, a question about opening hours and the warranty brings the hours'
    passage (the most alike after the answer's own) every time; the other distractor varies."""
    question = "When do you open, and how long is the bicycle frame warranty?"
    samples = [qa(question, WARRANTY) for _ in range(100)]
    grounded = ground_samples(samples, PASSAGES, words, 20, share=1.0, distractors=2, without_answer=0.25, seed=5)
    carried = [numbers(sample.messages[1]["content"]) for sample in grounded]
    assert all(2 in passages for passages in carried)  # Shop > Hours: "open"
    assert len({p for passages in carried for p in passages} - {1, 2}) == 3  # the random one: any other


def test_whole_mode_every_passage_and_about_the_share_grounded() -> None:
    samples = [qa(f"Question {i} about the warranty?", WARRANTY) for i in range(200)]
    out = ground_samples(samples, PASSAGES, words, 1000, share=0.5, without_answer=0.2, seed=1)
    grounded = [s for s in out if is_grounded(s)]
    assert 70 <= len(grounded) <= 130
    assert all(s in samples for s in out if not is_grounded(s))  # the rest as they were
    for sample in grounded:  # every passage, the answer's never left out (chat never does)
        assert numbers(sample.messages[1]["content"]) == [0, 1, 2, 3, 4]
        assert sample.messages[2]["content"] == WARRANTY


def test_other_samples_pass_through() -> None:
    chat = Sample([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] * 2)
    unrelated = qa("What is the meaning of life?", "Forty-two, says the guide.", system=False)
    assert ground_samples([chat, unrelated], PASSAGES, words, 1000, share=1.0, seed=0) == [chat, unrelated]


def test_abstention_samples_ask_what_the_documents_do_not_say_with_the_passages_chat_gives() -> None:
    questions = unanswered(" ".join(text for _, text in PASSAGES))
    assert "Do you sell gift cards?" in questions
    assert "Do you have a stand at the Christmas market?" in questions
    # A stem that starts a word of the documents keeps the question out ("cards" does not, "gift" would).
    assert "Do you sell gift cards?" not in unanswered("Gift vouchers are sold at the till.")
    assert "Do you have a podcast?" in unanswered("We broadcast the race.")  # "podcast" must start a word
    like = qa("Anything?", WARRANTY)
    whole = abstention_samples(like, questions, PASSAGES, words, 1000, count=5, seed=2)
    assert whole == abstention_samples(like, questions, PASSAGES, words, 1000, count=5, seed=2)
    assert len({s.messages[1]["content"] for s in whole}) == 5  # each question once
    for sample in whole:
        system, user, answer = sample.messages
        assert system == like.messages[0] and is_grounded(sample) and answer["content"] == NOT_IN_PASSAGES
        assert numbers(user["content"]) == [0, 1, 2, 3, 4]  # whole mode: all of them, as chat gives
        assert user["content"].split("Question: ")[1] in questions
    search = abstention_samples(like, questions, PASSAGES, words, 20, count=40, distractors=2, seed=2)
    assert len(search) == len(questions)  # no more than there are questions
    assert all(len(numbers(s.messages[1]["content"])) == 3 for s in search)  # distractors + 1, in order
    assert all(numbers(s.messages[1]["content"]) == sorted(numbers(s.messages[1]["content"])) for s in search)


def test_a_grounded_jobs_rows_carry_the_handbook_once_per_row(embedded_model_dir: Path) -> None:
    from adapters.base_model import load_tokenizer

    tokenizer = load_tokenizer(embedded_model_dir)
    document = read_document(ROOT / "examples" / "handbook.md", "handbook.md")
    passages = [(p["heading"], p["text"]) for p in document_passages(document)]
    # The handbook fits the embedded model's passage budget: chat and training give all of it.
    assert sum(passage_cost(tokenizer, *p) for p in passages) <= passage_budget(8192)
    samples = build_samples(load_records(ROOT / "examples" / "handbook.md", "h.md"), None, seed=0)
    prepared = SimpleNamespace(tokenizer=tokenizer, context_length=8192)
    plain_rows, _ = SupervisedRecipe(samples, None).rows(prepared, 256, seed=0)  # type: ignore[arg-type]
    recipe = SupervisedRecipe(samples, None, passages)
    rows, held = recipe.rows(prepared, 256, seed=0)  # type: ignore[arg-type]
    abstaining = recipe.stats["abstention_samples"]
    assert sum(r.samples for r in rows) == len(samples.train) + abstaining
    assert sum(r.samples for r in plain_rows) == len(samples.train)
    assert sum(r.samples for r in held) == len(samples.heldout)
    assert 0.35 * len(samples.train) <= recipe.stats["grounded_samples"] <= 0.65 * len(samples.train)
    assert abstaining == round(0.1 * recipe.stats["grounded_samples"])  # the handbook leaves enough questions
    # Whole mode: every grounded question carries the whole handbook, a prefix held once per row,
    # so training on half the questions grounded costs well under twice the tokens.
    assert sum(r.sample_tokens for r in rows) > 5 * sum(r.sample_tokens for r in plain_rows)
    assert sum(r.tokens for r in rows) < 2.5 * sum(r.tokens for r in plain_rows)
