"""swaplora: the top of the stack, the console script ``swaplora`` and nothing else.

Why a package of its own: the CLI composes ``server/``, ``trainer/`` and ``ui/``, which must never
import each other (a trained adapter reaches the server through the ``adapters/`` store, the UI
talks to the server over HTTP). Only this package may import all of them, and nothing imports it.
It imports those packages lazily, inside each subcommand, so ``swaplora --help`` and
``swaplora --version`` stay instant and never load torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("swaplora")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
