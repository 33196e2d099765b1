"""Retrieval alone, without a model answering: do the passages found hold the answer?

For every handbook of the grounding evaluation set (:mod:`bench.grounding_eval_set`: questions
written apart from the trainer's generator) each answerable question is searched among the
tenant's passages by words (BM25, the baseline), by meaning (the shipped all-MiniLM-L6-v2) and by
both (reciprocal rank fusion, weights ``--weights``), in two settings: ``one_file`` (the tenant
names only that handbook, as in ``bench/grounding_bench.py``) and ``all_files`` (every handbook
named at once: more passages than fit a prompt, so the search alone picks what the model sees).
A passage holds the answer when it matches every expected fact (the grounding bench's rule).
Prints JSON: per setting and method, ``hit_at_1`` and ``hit_at_k`` (the share of questions whose
first passage / first ``top_k`` passages hold the answer), per handbook and overall, the ratio of
each to BM25's, and the mean time of one search (``search_ms``; the query embedding is not cached).

    .venv/bin/python bench/retrieval_bench.py [--top-k 4] [--weights 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedding_model import prepare_embedding_model  # noqa: E402
from bench.grounding_eval_set import UNANSWERABLE, Handbook, correct, handbooks  # noqa: E402
from server.knowledge.dense_index import DenseIndex  # noqa: E402
from server.knowledge.embedder_threads import EmbedderThreads  # noqa: E402
from server.knowledge.knowledge_base import DENSE_WEIGHT, KnowledgeBase  # noqa: E402
from server.knowledge.passage_index import Passage, PassageIndex  # noqa: E402
from trainer.documents import read_document  # noqa: E402
from trainer.passages import document_passages  # noqa: E402

TENANT = "bench"
Search = Callable[[str, list[str], int], list[Passage]]


def build(root: Path) -> tuple[KnowledgeBase, dict[str, str]]:
    """Every handbook indexed and embedded, as an upload would; file ids by handbook slug."""
    embedder = EmbedderThreads(prepare_embedding_model(ROOT / "data" / "models"), queries_kept=0)
    knowledge = KnowledgeBase(PassageIndex(root / "words"), DenseIndex(root / "vectors"), embedder, 20_000, 600.0)
    ids = {}
    for i, book in enumerate(handbooks()):
        ids[book.slug] = f"file-{i}"
        passages = document_passages(read_document(book.path, book.path.name))
        knowledge.add_file(TENANT, ids[book.slug], book.path.name, passages)
    return knowledge, ids


def methods(knowledge: KnowledgeBase, weights: list[float]) -> dict[str, Search]:
    def words(query: str, files: list[str], k: int) -> list[Passage]:
        return knowledge.passages.search(TENANT, query, files, k)

    def meaning(query: str, files: list[str], k: int) -> list[Passage]:
        return knowledge.dense_search(TENANT, query, files, k)

    def both(weight: float) -> Search:
        return lambda query, files, k: knowledge.search(TENANT, query, files, k, dense_weight=weight)

    found: dict[str, Search] = {"words": words, "meaning": meaning}
    found |= {f"both_w{w:g}": both(w) for w in weights}
    found["served"] = lambda query, files, k: knowledge.search(TENANT, query, files, k)
    return found


def score(book: Handbook, search: Search, files: list[str], top_k: int) -> tuple[list[bool], list[bool], list[float]]:
    first, any_, took = [], [], []
    for question in book.questions:
        if question.style == UNANSWERABLE:
            continue
        started = time.perf_counter()
        hits = search(question.text, files, top_k)
        took.append(time.perf_counter() - started)
        first.append(bool(hits) and correct(hits[0].text, question))
        any_.append(correct(" ".join(p.text for p in hits), question))
    return first, any_, took


def rate(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 3)


def evaluate(knowledge: KnowledgeBase, ids: dict[str, str], setting: str, weights: list[float], top_k: int) -> dict:
    """Every method's scores in one setting (``one_file`` or ``all_files``)."""
    rows: dict = {}
    for name, search in methods(knowledge, weights).items():
        first, any_, took, per_book = [], [], [], {}
        for book in handbooks():
            files = [ids[book.slug]] if setting == "one_file" else list(ids.values())
            book_first, book_any, book_took = score(book, search, files, top_k)
            per_book[book.slug] = {"hit_at_1": rate(book_first), "hit_at_k": rate(book_any)}
            first, any_, took = first + book_first, any_ + book_any, took + book_took
        rows[name] = {
            "hit_at_1": rate(first),
            "hit_at_k": rate(any_),
            "search_ms": round(1000 * sum(took) / len(took), 2),
            "per_handbook": per_book,
        }
    for row in rows.values():
        for key in ("hit_at_1", "hit_at_k"):
            row[f"{key}_vs_words"] = round(row[key] / rows["words"][key], 2) if rows["words"][key] else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--weights", default="1,3,6", help="dense weights of the fused rankings to compare")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",") if w]
    with tempfile.TemporaryDirectory() as tmp:
        knowledge, ids = build(Path(tmp))
        answerable = {b.slug: sum(q.style != UNANSWERABLE for q in b.questions) for b in handbooks()}
        result = {"top_k": args.top_k, "questions": answerable, "served_dense_weight": DENSE_WEIGHT}
        for setting in ("one_file", "all_files"):
            result[setting] = evaluate(knowledge, ids, setting, weights, args.top_k)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
