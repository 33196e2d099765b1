"""Grounded answers on the embedded model: base, adapter, retrieval + base, retrieval + adapter; JSON.

Starts ``swaplora serve`` (embedded SmolLM2-135M in NF4, a fresh data directory unless
``--data``) and, per handbook of the evaluation set (bench/grounding_eval_set.py: hand-written
questions the trainer never sees), creates a tenant, uploads the handbook, turns the tenant's
retrieval on for it and trains an adapter with default settings through the fine-tuning API
(retrieval on, so the job is retrieval-aware). Then every question is asked four ways (greedy,
``--max-tokens``): the base and the adapter, each with the tenant's retrieval off and on.
Answers are asked a few at a time (the engine batches them); time to first token is measured
apart, one streamed request at a time, on every question of a handbook (or the first
``--ttft-questions``), with retrieval off and on back to back (paired, the order alternating, so
both sides of a ratio see the same load on a shared machine), twice: before the model's answers,
so every prompt is new to the server (a customer's new question: the target is judged on it; the
first retrieval request of a model fills the prefix cache with the passages, and counts), and
after them (``_repeated``: the same prompts again, whole prompts in the prefix cache but their
last partial block, so the time depends on the prompt's length modulo the cache's block size more
than on retrieval).

    .venv/bin/python bench/grounding_bench.py                       # train, then ask
    .venv/bin/python bench/grounding_bench.py --data DIR            # reuse adapters trained in DIR
    .venv/bin/python bench/grounding_bench.py --plain               # adapters trained without RAFT
    .venv/bin/python bench/grounding_bench.py --together            # one tenant, every handbook in one file
    .venv/bin/python bench/grounding_bench.py --model DIR           # another base (a GPU machine's larger model)
    .venv/bin/python bench/grounding_bench.py --max-seconds 1500    # train to the end of the planned schedule

``--together`` joins the handbooks into one document (too long for the prompt: **search mode**,
where the search decides which passages the model reads) and asks every question of that one
tenant and adapter; the others give each handbook its own tenant (each fits: whole mode).

Prints per handbook and overall: recall of each of the four (unanswerable questions apart, as
``abstained``: the share answered with "do not know"; ``abstained_answerable``: the share of the
answerable ones answered so, a miss but not a wrong fact), how often the reply's first citation
(and its citations together) hold the answer (the search's quality, the same for every model),
TTFT p50 with and without retrieval and their ratio (new and repeated questions; overall: the
p50s of every question of every handbook pooled), training seconds, and the misses of
retrieval + adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.embedded import prepare_embedded_model  # noqa: E402
from adapters.machine import machine_info  # noqa: E402
from bench.grounding_eval_set import UNANSWERABLE, Handbook, Question, correct, handbooks  # noqa: E402
from bench.serve_bench import start_server, stop_server  # noqa: E402
from trainer.documents import read_document  # noqa: E402
from trainer.passages import document_passages  # noqa: E402

COLUMNS = ("base", "adapter", "retrieval_base", "retrieval_adapter")
ABSTAINING = next(q for b in handbooks() for q in b.questions if q.style == UNANSWERABLE)
"""An unanswerable question: what it expects is what saying "I do not know" looks like."""


def ask(http: httpx.Client, key: str, model: str, question: str, max_tokens: int) -> dict:
    """One streamed greedy answer: its text, time to first token, prompt tokens, citations."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first, text, prompt_tokens = None, "", 0
    cited: list[dict] = []
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                prompt_tokens = chunk["usage"]["prompt_tokens"]
            cited = chunk.get("citations") or cited
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    first = first or time.perf_counter() - started
                    text += choice["delta"]["content"]
    return {"text": text, "ttft": first, "prompt_tokens": prompt_tokens, "citations": cited}


class Tenant:
    """One handbook's tenant on the bench's server: its key, file and adapter."""

    def __init__(self, http: httpx.Client, admin: dict, book: Handbook, raft: bool = True) -> None:
        self.http, self.admin, self.book, self.slug = http, admin, book, book.slug.replace("_", "-")
        self.suffix = "handbook" if raft else "plain"
        created = http.post("/v1/tenants", json={"id": self.slug}, headers=admin)
        if created.status_code == 201:
            self.key = created.json()["api_key"]
        else:  # a data directory from an earlier run
            self.key = http.post(f"/v1/tenants/{self.slug}/keys", json={"kind": "secret"}, headers=admin).json()[
                "api_key"
            ]
        files = {"file": (book.path.name, book.path.read_bytes(), "text/markdown")}
        self.file_id = http.post("/v1/files", headers=self._auth, data={"purpose": "fine-tune"}, files=files).json()[
            "id"
        ]
        self.retrieval(raft)  # on while training: the job is retrieval-aware (RAFT)
        self.model = self._trained()
        self.job: str | None = None

    @property
    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def retrieval(self, on: bool, top_k: int = 4) -> None:
        setting = {"enabled": on, "files": [self.file_id], "top_k": top_k}
        self.http.patch(f"/v1/tenants/{self.slug}", json={"retrieval": setting}, headers=self.admin).raise_for_status()

    def _trained(self) -> str | None:
        models = self.http.get("/v1/models", headers=self._auth).json()["data"]
        return next((m["id"] for m in models if m["id"] == f"{self.slug}/{self.suffix}"), None)

    def train(self, max_seconds: float | None = None) -> None:
        body: dict = {"training_file": self.file_id, "model": "base", "suffix": self.suffix}
        if max_seconds:
            body["hyperparameters"] = {"max_seconds": max_seconds}
        self.job = self.http.post("/v1/fine_tuning/jobs", json=body, headers=self._auth).json()["id"]

    def wait(self) -> dict:
        while True:
            job = self.http.get(f"/v1/fine_tuning/jobs/{self.job}", headers=self._auth).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                if job["status"] != "succeeded":
                    raise RuntimeError(f"{self.slug}: training {job['status']}: {job.get('error')}")
                self.model = job["fine_tuned_model"]
                return job
            time.sleep(2)


def abstains(reply: str) -> bool:
    """Whether ``reply`` says it does not know (the unanswerable questions' rule)."""
    return correct(reply, ABSTAINING)


def answers(tenant: Tenant, model: str, questions: tuple[Question, ...], max_tokens: int) -> list[dict]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda q: ask(tenant.http, tenant.key, model, q.text, max_tokens), questions))


def passages_by_span(book: Handbook) -> dict[tuple[int, int], dict]:
    """The handbook's passages as the server cut them, by the ``(start, end)`` a citation names."""
    return {(p["start"], p["end"]): p for p in document_passages(read_document(book.path, book.path.name))}


def cited_hits(book: Handbook, asked: list[dict]) -> tuple[list[bool], list[bool]]:
    """Per question: whether its first citation's passage holds the answer (every expected fact),
    and whether its cited passages together do (the ``top_k`` hits; the search is the same
    for every model)."""
    text = {span: p["text"] for span, p in passages_by_span(book).items()}
    cited = [[text.get((c["start"], c["end"]), "") for c in a["citations"]] for a in asked]  # best first
    first = [correct(c[0] if c else "", q) for c, q in zip(cited, book.questions, strict=True)]
    every = [correct(" ".join(c), q) for c, q in zip(cited, book.questions, strict=True)]
    return first, every


def timed_pairs(tenant: Tenant, model: str, questions: tuple[Question, ...], top_k: int) -> dict[bool, list[dict]]:
    """One streamed request per question with retrieval off and one with it on, back to back (the
    order alternating from question to question), so both sides of a ratio see the same machine."""
    timed: dict[bool, list[dict]] = {False: [], True: []}
    for i, question in enumerate(questions):
        for on in (False, True) if i % 2 == 0 else (True, False):
            tenant.retrieval(on, top_k)
            timed[on].append(ask(tenant.http, tenant.key, model, question.text, 1))
    return timed


def evaluate(tenant: Tenant, args: argparse.Namespace) -> dict:
    """The four columns' answers and the TTFTs of one handbook."""
    assert tenant.model is not None
    book, asked, ttft, prompt_tokens = tenant.book, {}, {}, {}
    timed = book.questions[: args.ttft_questions or None]
    for model, name in ((tenant.model, "adapter"), ("base", "base")):
        new = timed_pairs(tenant, model, timed, args.top_k)  # prompts not seen yet
        for on in (False, True):
            tenant.retrieval(on, args.top_k)
            asked[f"retrieval_{name}" if on else name] = answers(tenant, model, book.questions, args.max_tokens)
        again = timed_pairs(tenant, model, timed, args.top_k)  # whole prompts cached
        for on in (False, True):
            column = f"retrieval_{name}" if on else name
            ttft[column] = [t["ttft"] for t in new[on]]
            ttft[f"{column}_repeated"] = [t["ttft"] for t in again[on]]
            prompt_tokens[column] = statistics.median(t["prompt_tokens"] for t in new[on])
    replies = {column: [a["text"] for a in asked[column]] for column in COLUMNS}
    first, every = cited_hits(book, asked["retrieval_base"])
    answerable = [i for i, q in enumerate(book.questions) if q.style != UNANSWERABLE]
    unanswerable = [i for i, q in enumerate(book.questions) if q.style == UNANSWERABLE]
    scored = {c: [correct(replies[c][i], book.questions[i]) for i in range(len(book.questions))] for c in COLUMNS}
    result: dict = {"questions": len(answerable), "seen_by_generator": book.seen_by_generator}
    result["citation_first_holds_answer"] = round(sum(first[i] for i in answerable) / len(answerable), 3)
    result["citations_hold_answer"] = round(sum(every[i] for i in answerable) / len(answerable), 3)
    for column in COLUMNS:
        result[f"recall_{column}"] = round(sum(scored[column][i] for i in answerable) / len(answerable), 3)
        refused = sum(abstains(replies[column][i]) for i in answerable)
        result[f"abstained_answerable_{column}"] = round(refused / len(answerable), 3)
        if unanswerable:
            result[f"abstained_{column}"] = sum(scored[column][i] for i in unanswerable) / len(unanswerable)
    for name in ("base", "adapter"):
        for when in ("", "_repeated"):
            off, on = statistics.median(ttft[f"{name}{when}"]), statistics.median(ttft[f"retrieval_{name}{when}"])
            result[f"ttft_p50_{name}{when}_s"] = round(off, 3)
            result[f"ttft_p50_retrieval_{name}{when}_s"] = round(on, 3)
            result[f"ttft_ratio_{name}{when}"] = round(on / off, 2)
    result["prompt_tokens_p50"] = prompt_tokens
    result["misses_retrieval_adapter"] = [
        {
            "question": book.questions[i].text,
            "style": book.questions[i].style,
            "answer": replies["retrieval_adapter"][i][:160],
        }
        for i in answerable
        if not scored["retrieval_adapter"][i]
    ]
    result["_scored"] = {c: [scored[c][i] for i in answerable] for c in COLUMNS}
    result["_cited"] = {"first": [first[i] for i in answerable], "every": [every[i] for i in answerable]}
    result["_ttft"] = ttft
    result["_styles"] = [book.questions[i].style for i in answerable]
    return result


def together(books: list[Handbook], folder: Path) -> Handbook:
    """``books`` joined into one document (each keeps its title and sections) with all their questions."""
    path = folder / "handbooks.md"
    path.write_text("\n\n".join(b.path.read_text().strip() for b in books) + "\n")
    questions = tuple(q for b in books for q in b.questions)
    return Handbook("handbooks", path, questions, any(b.seen_by_generator for b in books))


def overall(per_book: dict[str, dict]) -> dict:
    """Recall over every answerable question, per column and per style; the TTFT ratios' median."""
    result: dict = {}
    styles = [s for r in per_book.values() for s in r["_styles"]]
    for column in COLUMNS:
        hits = [h for r in per_book.values() for h in r["_scored"][column]]
        result[f"recall_{column}"] = round(sum(hits) / len(hits), 3)
        refused = sum(r[f"abstained_answerable_{column}"] * r["questions"] for r in per_book.values())
        result[f"abstained_answerable_{column}"] = round(refused / len(hits), 3)
        abstaining = [r[f"abstained_{column}"] for r in per_book.values() if f"abstained_{column}" in r]
        if abstaining:  # the mean over the handbooks that have unanswerable questions
            result[f"abstained_{column}"] = round(sum(abstaining) / len(abstaining), 3)
        result[f"recall_{column}_by_style"] = {
            style: round(sum(h for h, s in zip(hits, styles, strict=True) if s == style) / styles.count(style), 3)
            for style in sorted(set(styles))
        }
    for name in ("base", "adapter", "base_repeated", "adapter_repeated"):
        off = statistics.median(t for r in per_book.values() for t in r["_ttft"][name])
        on = statistics.median(t for r in per_book.values() for t in r["_ttft"][f"retrieval_{name}"])
        result[f"ttft_ratio_{name}_p50"] = round(on / off, 2)  # every question of every handbook pooled
    for name, key in (("first", "citation_first_holds_answer"), ("every", "citations_hold_answer")):
        cited = [h for r in per_book.values() for h in r["_cited"][name]]
        result[key] = round(sum(cited) / len(cited), 3)
    result["questions"] = len(styles)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="data directory (default: a new temporary one); adapters in it are reused"
    )
    parser.add_argument("--handbooks", help="comma-separated slugs (default: all)")
    parser.add_argument("--model", type=Path, help="base model directory (default: the embedded SmolLM2-135M)")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--ttft-questions", type=int, default=0, help="questions timed per handbook (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: the server's default)")
    parser.add_argument("--plain", action="store_true", help="train with retrieval off (no RAFT), for comparison")
    parser.add_argument("--together", action="store_true", help="one tenant, the handbooks joined (search mode)")
    parser.add_argument(
        "--max-seconds", type=float, help="each job's training budget (default: auto, 480 s on a CPU, 4 h on a GPU)"
    )
    args = parser.parse_args()
    books = [b for b in handbooks() if not args.handbooks or b.slug in args.handbooks.split(",")]
    model_dir = args.model or prepare_embedded_model(ROOT / "data" / "models")
    admin_key = secrets.token_hex(16)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.together:
            books = [together(books, Path(tmp))]
        data = args.data or Path(tmp) / "data"
        data.mkdir(parents=True, exist_ok=True)
        process, url = start_server(data, model_dir, admin_key, args.threads)
        try:
            with httpx.Client(base_url=url, timeout=1800) as http:
                admin = {"Authorization": f"Bearer {admin_key}"}
                tenants = [Tenant(http, admin, book, raft=not args.plain) for book in books]
                for tenant in tenants:
                    if tenant.model is None:
                        tenant.train(args.max_seconds)
                trained = {t.book.slug: t.wait() for t in tenants if t.job}
                per_book = {t.book.slug: evaluate(t, args) for t in tenants}
        finally:
            stop_server(process)
    summary = {"overall": overall(per_book)}
    for slug, result in per_book.items():
        for private in ("_scored", "_styles", "_ttft", "_cited"):
            result.pop(private)
        if slug in trained:
            metrics = trained[slug].get("metrics") or {}
            result["train_seconds"] = metrics.get("train_seconds")
            result["job_probe_recall_after"] = metrics.get("probe_recall_after")
        summary[slug] = result
    summary.update(
        model=str(model_dir),
        max_seconds=args.max_seconds or "auto",
        mode="search (the handbooks together)" if args.together else "whole (one handbook per tenant)",
        top_k=args.top_k,
        max_tokens=args.max_tokens,
        adapters="plain (trained with retrieval off)" if args.plain else "RAFT (trained with retrieval on)",
        targets={"recall_retrieval_adapter": 0.95, "recall_adapter": 0.85, "ttft_ratio (new questions)": 1.3},
        wall_s=round(time.perf_counter() - started),
        load_average=os.getloadavg(),
        cpu=machine_info(),
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
