"""``python -m trainer.check``: validate an uploaded file or a job's hyperparameters, without torch.

The server runs this in a subprocess with a timeout and a memory limit (docs/training-jobs.md)::

    python -m trainer.check file PATH --filename NAME
    python -m trainer.check hyperparameters JSON

It prints exactly one JSON object on stdout and exits 0 whatever the verdict:

- ``{"ok": true, "format": "markdown", "records": 14, "faq_pairs": 4, "characters": 2710}``
- ``{"ok": true, "hyperparameters": {...normalised, defaults filled in...}}``
- ``{"ok": false, "code": "invalid_file" | "file_too_large" | "invalid_hyperparameters",
  "message": "...", "param": ...}`` (``param`` only for hyperparameters: the key at fault).

A nonzero exit status means the checker itself crashed. Nothing on this path imports torch or
transformers (a test checks ``sys.modules``); the hyperparameter module is imported only for the
``hyperparameters`` subcommand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def check_file(path: Path, filename: str) -> dict[str, Any]:
    """The verdict on one uploaded file."""
    from trainer.documents import DocumentError, read_document

    try:
        document = read_document(path, filename)
    except DocumentError as error:
        return {"ok": False, "code": error.code, "message": error.message}
    return {
        "ok": True,
        "format": document.format,
        "records": len(document.records),
        "faq_pairs": document.faq_pairs,
        "characters": document.characters,
    }


def check_hyperparameters(text: str) -> dict[str, Any]:
    """The verdict on a JSON object of hyperparameters: normalised, or what is wrong."""
    from trainer.hyperparameters import HyperparameterError, normalise

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        return {"ok": False, "code": "invalid_hyperparameters", "message": f"not valid JSON ({error.msg})"}
    if raw is not None and not isinstance(raw, dict):
        return {"ok": False, "code": "invalid_hyperparameters", "message": "hyperparameters must be a JSON object"}
    try:
        return {"ok": True, "hyperparameters": normalise(raw)}
    except HyperparameterError as error:
        verdict = {"ok": False, "code": "invalid_hyperparameters", "message": error.message}
        return verdict | ({"param": error.param} if error.param else {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.check", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    file_parser = commands.add_parser("file", help="check an uploaded training file")
    file_parser.add_argument("path", type=Path)
    file_parser.add_argument("--filename", help="the name it was uploaded as (default: the path's name)")
    hyper_parser = commands.add_parser("hyperparameters", help="check and normalise a JSON object")
    hyper_parser.add_argument("json")
    args = parser.parse_args(argv)
    if args.command == "file":
        verdict = check_file(args.path, args.filename or args.path.name)
    else:
        verdict = check_hyperparameters(args.json)
    sys.stdout.write(json.dumps(verdict) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
