"""``python -m trainer.check``: validate an uploaded file, without torch.

The server runs this in a subprocess with a timeout and a memory limit (docs/training-jobs.md),
because parsing an untrusted PDF or DOCX must not be able to hurt it::

    python -m trainer.check file PATH --filename NAME [--passages OUT]

It prints exactly one JSON object on stdout and exits 0 whatever the verdict:

- ``{"ok": true, "format": "markdown", "records": 14, "faq_pairs": 4, "characters": 2710}``
  (``format`` ``preference_jsonl`` for OpenAI's preference pairs, DPO's data; ``records`` then
  counts the pairs)
- ``{"ok": false, "code": "invalid_file" | "file_too_large", "message": "..."}``

With ``--passages OUT`` an accepted file's passages for retrieval (:mod:`trainer.passages`) are
written to ``OUT`` as a JSON list. A nonzero exit status means the checker itself crashed.
Nothing on this path imports torch or transformers (a test checks ``sys.modules``).
Hyperparameters are not checked here: the server checks them in-process with
:mod:`adapters.hyperparameters`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def check_file(path: Path, filename: str, passages_path: Path | None = None) -> dict[str, Any]:
    """The verdict on one uploaded file (and its passages written to ``passages_path``)."""
    from trainer.documents import DocumentError, read_document
    from trainer.passages import document_passages

    try:
        document = read_document(path, filename)
    except DocumentError as error:
        return {"ok": False, "code": error.code, "message": error.message}
    if passages_path is not None:
        passages_path.write_text(json.dumps(document_passages(document)))
    return {
        "ok": True,
        "format": document.format,
        "records": len(document.records) or len(document.pairs),
        "faq_pairs": document.faq_pairs,
        "characters": document.characters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.check", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    file_parser = commands.add_parser("file", help="check an uploaded training file")
    file_parser.add_argument("path", type=Path)
    file_parser.add_argument("--filename", help="the name it was uploaded as (default: the path's name)")
    file_parser.add_argument("--passages", type=Path, help="write the file's passages for retrieval here (JSON)")
    args = parser.parse_args(argv)
    verdict = check_file(args.path, args.filename or args.path.name, args.passages)
    sys.stdout.write(json.dumps(verdict) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
