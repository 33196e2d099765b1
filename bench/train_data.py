"""What both training benchmarks share: the example documents as encoded samples, the settings.

:func:`bench_samples` runs the trainer's own pipeline on ``examples/`` (the handbook plus any
``*.csv`` / ``*.jsonl`` there): documents -> records -> chat samples (seeded split) -> token ids
with assistant-only labels, each cut to ``max_seq_tokens`` as packing would cut it. Both sides of
a comparison get exactly these samples, so they train on the same tokens.

:func:`bench_hyperparameters` is the trainer's defaults with a fixed epoch count and no
wall-clock cut (a budget re-plans the schedule from the measured speed, so two runs on a shared
machine would train different step counts). :func:`common_arguments` adds the options both
scripts take; :func:`rounded` makes their JSON readable. :func:`spawn_side` runs one side of a
comparison in a fresh subprocess (its own peak memory), :func:`alternating_runs` repeats the
sides in alternating order, and :func:`run_bench` is a comparison
script's ending: one side when ``--side`` names it, else the whole comparison printed with the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.base_model import load_tokenizer
from adapters.embedded import prepare_embedded_model
from adapters.hyperparameters import Hyperparameters, parse
from adapters.machine import machine_info
from trainer.tokenize import EncodedSample, encode

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCUMENT_SUFFIXES = (".md", ".csv", ".jsonl")


@dataclass(frozen=True)
class BenchData:
    """Encoded train and held-out samples; ``documents`` names the files they came from."""

    train: list[EncodedSample]
    heldout: list[EncodedSample]
    documents: list[str]

    @property
    def train_tokens(self) -> int:
        """Real (non-padding) tokens in one pass over ``train``."""
        return sum(len(s) for s in self.train)


def default_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted under ``data/models`` if not yet."""
    return prepare_embedded_model(ROOT / "data" / "models")


def _documents() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix in DOCUMENT_SUFFIXES and p.is_file())


def _conversations(paths: list[Path], seed: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """(train, held-out) conversations from the trainer's document pipeline."""
    from trainer.documents import load_records
    from trainer.samples import build_samples

    records = [record for path in paths for record in load_records(path, path.name)]
    sample_set = build_samples(records, None, seed)
    return [list(s.messages) for s in sample_set.train], [list(s.messages) for s in sample_set.heldout]


def _cut(sample: EncodedSample, budget: int) -> EncodedSample:
    return sample if len(sample) <= budget else EncodedSample(sample.input_ids[:budget], sample.labels[:budget])


def bench_samples(model_dir: Path, *, seed: int, max_seq_tokens: int, train_limit: int | None = None) -> BenchData:
    """The example documents' samples, tokenized for ``model_dir``; ``train_limit`` keeps a
    seeded subset of the training samples (a shorter benchmark), the held-out set stays whole."""
    tokenizer = load_tokenizer(model_dir)
    paths = _documents()
    train, heldout = _conversations(paths, seed)
    if train_limit is not None and train_limit < len(train):
        train = random.Random(seed).sample(train, train_limit)
    return BenchData(
        train=[_cut(encode(tokenizer, m), max_seq_tokens) for m in train],
        heldout=[_cut(encode(tokenizer, m), max_seq_tokens) for m in heldout],
        documents=[p.name for p in paths],
    )


def bench_hyperparameters(args: argparse.Namespace) -> Hyperparameters:
    """The trainer's defaults with ``args``' epochs, batch size and packing budget (None: the
    trainer's default) and no time budget."""
    raw: dict[str, Any] = {"max_seconds": 7 * 24 * 3600.0}
    for key, value in (
        ("n_epochs", args.epochs),
        ("batch_size", args.batch_size),
        ("max_seq_tokens", args.max_seq_tokens),
    ):
        if value is not None:
            raw[key] = value
    return parse(raw)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options both training benchmarks take."""
    parser.add_argument("--max-seq-tokens", type=int, default=None, help="packing budget (default: the trainer's)")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the converted embedded model")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--seed", type=int, default=0)


def rounded(value: Any) -> Any:
    """Floats rounded to 3 decimals, through dicts and lists."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def spawn_side(command: list[str], side: str, threads: int) -> dict[str, Any]:
    """The JSON line a side's subprocess (``command``) prints last, run with ``threads`` torch threads."""
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{side} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def alternating_runs(
    sides: tuple[str, ...], repeats: int, spawn: Callable[[str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``repeats`` runs of every side, alternating which goes first, each tagged with its ``repeat``."""
    runs = []
    for repeat in range(repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            runs.append({**spawn(side), "repeat": repeat})
    return runs


def run_bench(
    args: argparse.Namespace,
    child: Callable[[argparse.Namespace], None],
    compare: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    """``child(args)`` when ``args.side`` names a side, else ``compare(args)`` printed as JSON with the machine."""
    args.model_dir = args.model_dir or default_model_dir()
    if args.side:
        child(args)
        return
    print(json.dumps(rounded({**compare(args), "cpu": machine_info()}), indent=2))
