"""The ``swaplora`` console script: ``serve`` and ``prepare-model`` (``train`` and ``ui`` come later).

Contract:

- ``swaplora serve [--host H] [--port P] [--model PATH] [--data DIR]`` builds
  :class:`server.settings.Settings` from the ``SWAPLORA_*`` environment, with each given flag
  overriding its field, then blocks in :func:`server.app.serve` until the server stops (with no
  ``--model`` the server converts the embedded base model itself, in the background).
- ``swaplora prepare-model [--data DIR]`` converts the embedded SmolLM2 GGUF to safetensors under
  ``<data>/models`` once (a no-op when already done) and prints the converted directory.
- ``swaplora --version`` prints the installed version.

:func:`main` returns a process exit status: 0 on success, 2 on bad arguments or settings.
Heavy imports (torch, transformers, starlette) happen inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swaplora import __version__

if TYPE_CHECKING:
    from server.settings import Settings

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace, fields: Sequence[str]) -> Settings:
    """Settings from the environment, with the CLI flags that were given taking precedence."""
    from pydantic import ValidationError

    from server.settings import Settings

    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in fields if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # A bad SWAPLORA_* variable is a usage error, not a crash: say which one and stop.
        raise SystemExit(f"swaplora: invalid settings:\n{exc}") from None


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, ("host", "port", "model", "data"))
    # With no --model the app converts the embedded model itself, in the background, so /health
    # answers during a first conversion (Docker, a fresh data volume) and /ready says when it is done.
    from server.app import serve

    serve(settings)
    return 0


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    settings = _settings(args, ("data",))
    from adapters.embedded import prepare_embedded_model

    print(prepare_embedded_model(settings.models_dir))
    return 0


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="data directory: adapters, tenants, converted base model (env SWAPLORA_DATA, default ./data)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subparser stores its handler in ``handler``."""
    parser = argparse.ArgumentParser(
        prog="swaplora",
        description="Per-tenant LoRA chat assistants on one NF4 base model, behind an OpenAI-compatible API.",
    )
    parser.add_argument("--version", action="version", version=f"swaplora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (OpenAI-compatible API)")
    serve.add_argument("--host", help="interface to bind (env SWAPLORA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (env SWAPLORA_PORT, default 8000)")
    serve.add_argument(
        "--model",
        metavar="PATH",
        help="a Hugging Face causal-LM directory to use as the base "
        "(env SWAPLORA_MODEL; default: the embedded SmolLM2-135M-Instruct)",
    )
    _add_data_flag(serve)
    serve.set_defaults(handler=_cmd_serve)

    prepare = sub.add_parser(
        "prepare-model", help="convert the embedded base model to safetensors once and print its path"
    )
    _add_data_flag(prepare)
    prepare.set_defaults(handler=_cmd_prepare_model)

    # Later subcommands register here, each importing its package lazily in its handler:
    #   train -> trainer/ (QLoRA on documents, publishes through adapters/)
    #   ui    -> ui/      (Gradio, talks to a running server over HTTP)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swaplora`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
