"""The ``swaplora`` console script: ``serve``, ``ui`` and ``prepare-model`` (``train`` comes later).

Contract:

- ``swaplora serve [--host H] [--port P] [--model PATH] [--data DIR]`` builds
  :class:`server.settings.Settings` from the ``SWAPLORA_*`` environment, with each given flag
  overriding its field, then blocks in :func:`server.app.serve` until the server stops (with no
  ``--model`` the server converts the embedded base model itself, in the background).
- ``swaplora prepare-model [--data DIR]`` converts the embedded SmolLM2 GGUF to safetensors under
  ``<data>/models`` once (a no-op when already done) and prints the converted directory.
- ``serve`` also mounts the Gradio UI at ``/ui``, talking to the server's own URL over HTTP
  (``--no-ui`` leaves it out); ``swaplora ui --api-url URL [--host H] [--port P]`` runs the UI
  alone against any running server.
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


def own_url(host: str, port: int) -> str:
    """The URL this machine reaches a server bound to ``host:port`` at (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, ("host", "port", "model", "data"))
    # With no --model the app converts the embedded model itself, in the background, so /health
    # answers during a first conversion (Docker, a fresh data volume) and /ready says when it is done.
    from server.app import create_app, serve

    app = create_app(settings)
    if not args.no_ui:
        # The composition root joins the two: the UI calls this server's own HTTP API, as any client.
        from ui.app import mount_ui

        mount_ui(app, own_url(settings.host, settings.port), "/ui", max_file_size=settings.max_upload_bytes,
                 blocked_paths=[settings.data])
    serve(settings, app)
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from ui.app import run_ui

    run_ui(args.api_url, host=args.host, port=args.port, max_file_size=args.max_file_size)
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
    serve.add_argument("--no-ui", action="store_true", help="do not mount the Gradio UI at /ui")
    _add_data_flag(serve)
    serve.set_defaults(handler=_cmd_serve)

    ui = sub.add_parser("ui", help="run the Gradio UI alone, against a running server's HTTP API")
    ui.add_argument("--api-url", required=True, metavar="URL", help="the server's root URL, e.g. http://host:8000")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    ui.add_argument("--max-file-size", type=int, default=512 * 1024 * 1024, metavar="BYTES",
                    help="largest accepted upload (default 512 MiB)")
    ui.set_defaults(handler=_cmd_ui)

    prepare = sub.add_parser(
        "prepare-model", help="convert the embedded base model to safetensors once and print its path"
    )
    _add_data_flag(prepare)
    prepare.set_defaults(handler=_cmd_prepare_model)

    # Later subcommands register here, each importing its package lazily in its handler:
    #   train -> trainer/ (QLoRA on documents, publishes through adapters/)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swaplora`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
