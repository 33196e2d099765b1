"""Which grounded prompt lets trained adapters answer best: the whole handbook, the search's best
hits alone, or the whole handbook with a pointer to the best passage; JSON.

Asks the adapters a ``bench/grounding_bench.py --data DIR`` run trained in DIR (and the base) every
answerable question of each handbook, greedy, 48 tokens, with the tenant's retrieval off and the
grounded prompt written here in the chat template's own words
(:func:`adapters.grounding_template.grounded_question`), so only the passages differ:

- ``whole``: every passage in document order (what chat gives a handbook that fits);
- ``top1`` / ``top2``: the search's best one or two hits, best first (the hits come from the
  server's own fused search: the citations of a retrieval-on request);
- ``pointer``: the whole handbook, then "(The answer is most likely in passage [n].)".

    .venv/bin/python bench/grounding_prompts.py --data DIR [--variants whole,top1,top2,pointer]

Prints per variant and model (``adapter``, ``base``) the answers that hold the expected facts, per
handbook and overall.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.grounding_template import grounded_question  # noqa: E402
from bench.grounding_bench import Tenant, ask, passages_by_span  # noqa: E402
from bench.grounding_eval_set import UNANSWERABLE, Question, correct, handbooks  # noqa: E402
from bench.serve_bench import start_server, stop_server  # noqa: E402


def prompt(variant: str, question: Question, every: list[dict], hits: list[dict]) -> str:
    def pairs(passages: list[dict]) -> list[tuple[str, str]]:
        return [(p["heading"], p["text"]) for p in passages]

    if variant == "whole":
        return grounded_question(pairs(every), question.text)
    if variant in ("top1", "top2"):
        return grounded_question(pairs(hits[: int(variant[3:])]), question.text)
    if variant == "pointer":
        best = every.index(hits[0]) + 1
        return grounded_question(pairs(every), question.text) + f"\n(The answer is most likely in passage [{best}].)"
    raise ValueError(f"unknown variant {variant!r}")


def score(http: httpx.Client, tenant: Tenant, variants: list[str]) -> dict[str, list[int]]:
    """``{"adapter/whole": [right, asked], ...}`` for one handbook's tenant."""
    book = tenant.book
    by_span = passages_by_span(book)
    every = list(by_span.values())  # in document order
    asked = [q for q in book.questions if q.style != UNANSWERABLE]
    tenant.retrieval(True)
    with ThreadPoolExecutor(8) as pool:
        cited = list(pool.map(lambda q: ask(http, tenant.key, "base", q.text, 1)["citations"], asked))
    hits = [[by_span[(c["start"], c["end"])] for c in one] for one in cited]
    tenant.retrieval(False)
    scores = {}
    for model, name in ((tenant.model, "adapter"), ("base", "base")):
        assert model is not None
        for variant in variants:
            texts = [prompt(variant, q, every, h) for q, h in zip(asked, hits, strict=True)]
            with ThreadPoolExecutor(8) as pool:
                replies = list(pool.map(lambda text, m=model: ask(http, tenant.key, m, text, 48)["text"], texts))
            scores[f"{name}/{variant}"] = [sum(map(correct, replies, asked)), len(asked)]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a grounding_bench data directory (its adapters)")
    parser.add_argument("--variants", default="whole,top1,top2,pointer")
    args = parser.parse_args()
    admin_key, per_book = secrets.token_hex(16), {}
    process, url = start_server(args.data, prepare_embedded_model(ROOT / "data" / "models"), admin_key, 0)
    try:
        with httpx.Client(base_url=url, timeout=1800) as http:
            admin = {"Authorization": f"Bearer {admin_key}"}
            for book in handbooks():
                tenant = Tenant(http, admin, book)
                if tenant.model is not None:  # else no adapter was trained for it in this directory
                    per_book[book.slug] = score(http, tenant, args.variants.split(","))
    finally:
        stop_server(process)
    keys = {key for scores in per_book.values() for key in scores}
    overall = {
        key: f"{sum(s[key][0] for s in per_book.values())}/{sum(s[key][1] for s in per_book.values())}"
        for key in sorted(keys)
    }
    print(json.dumps({"overall": overall, "per_handbook": per_book}, indent=1))


if __name__ == "__main__":
    main()
