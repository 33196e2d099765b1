"""How the grounding bench scores what the server said: citations against the handbook's real
passages, and the overall TTFT ratio pooled over every question (no server, no timing)."""

from __future__ import annotations

from bench.grounding_bench import cited_hits, overall
from bench.grounding_eval_set import handbooks
from trainer.documents import read_document
from trainer.passages import document_passages


def test_a_citation_counts_when_its_passage_holds_every_expected_fact() -> None:
    book = next(b for b in handbooks() if b.slug == "dental_clinic")
    passages = document_passages(read_document(book.path, book.path.name))

    def citing(*best_first: dict) -> dict:  # "index" is the passage's number in the prompt, not its rank
        return {
            "citations": [
                {"index": len(best_first) - i, "start": p["start"], "end": p["end"]} for i, p in enumerate(best_first)
            ]
        }

    asked = []
    for question in book.questions:
        holding = [p for p in passages if any(g in p["text"] for g in question.expect[0])]
        other = next(p for p in passages if p not in holding)
        asked.append(citing(other, *holding))  # the answer's passage cited, but not as the best hit
    first, every = cited_hits(book, asked)
    single = [i for i, q in enumerate(book.questions) if len(q.expect) == 1 and q.style != "unanswerable"]
    assert single and not any(first[i] for i in single)
    assert all(every[i] for i in single)
    assert cited_hits(book, [{"citations": []} for _ in book.questions]) == (
        [False] * len(book.questions),
        [False] * len(book.questions),
    )


def test_the_overall_ttft_ratio_pools_every_question_of_every_handbook() -> None:
    def book(off: list[float], on: list[float]) -> dict:
        ttft = {
            f"{w}{n}{r}": (on if w else off)
            for w in ("", "retrieval_")
            for n in ("base", "adapter")
            for r in ("", "_repeated")
        }
        scored = {c: [True] for c in ("base", "adapter", "retrieval_base", "retrieval_adapter")}
        row = {"questions": 1, "_scored": scored, "_styles": ["direct"], "_ttft": ttft}
        row |= {"_cited": {"first": [True], "every": [True]}}
        row |= {f"abstained_answerable_{c}": 0.0 for c in scored}
        return row

    # One handbook's questions are slow with and without retrieval: pooled, the median question
    # decides; the median of per-handbook ratios would say 1.5.
    summary = overall({"a": book([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]), "b": book([10.0, 10.0], [11.0, 11.0])})
    assert summary["ttft_ratio_base_p50"] == round(2.0 / 1.0, 2)
    summary = overall({"a": book([1.0, 1.0], [1.2, 1.2]), "b": book([1.0, 1.0, 1.0], [1.3, 1.3, 1.3])})
    assert summary["ttft_ratio_adapter_p50"] == 1.3 and summary["citation_first_holds_answer"] == 1.0
