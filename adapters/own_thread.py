"""Torch work in a thread of its own that ends with the work, so its OpenMP thread pool ends too.

An OpenMP (libgomp) pool belongs to the thread whose parallel region made it and lives as long
as that thread, idle or not. libgomp counts the threads of every pool; when they outnumber the
cores it all but stops spin-waiting, so every parallel region of the thread doing the real work
(the engine's: a few hundred per forward pass) then waits for its workers to be woken. Measured
on an AMD EPYC with 2 cores: a 20-token forward pass of the embedded model in the engine's thread
took 68-78 ms instead of 47 ms, and 110-139 ms instead of 61 ms with an adapter, as long as the
main thread kept the idle pool it had made while loading the model.

Contract: :func:`in_own_thread` runs ``work`` in a new thread with the caller's torch thread count,
waits for it, and returns its result or raises its exception. The pool that ``work`` made is gone
when it returns; the caller's thread has made none. :func:`runs_in_own_thread` makes a function
always run so (:func:`adapters.base_model.load_base`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

T = TypeVar("T")
P = ParamSpec("P")


def in_own_thread(work: Callable[[], T], name: str = "swaplora-torch-work") -> T:
    """``work()``, run in a thread that ends with it (see the module docstring)."""
    threads = torch.get_num_threads()  # OpenMP thread counts are per thread: the caller's, not the default
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        torch.set_num_threads(threads)
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller, who raises it
            failure.append(exc)

    worker = threading.Thread(target=run, name=name)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def runs_in_own_thread(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, every call of it run by :func:`in_own_thread`."""

    @functools.wraps(function)
    def in_its_own_thread(*args: P.args, **kwargs: P.kwargs) -> T:
        return in_own_thread(lambda: function(*args, **kwargs), name=f"swaplora-{function.__name__}")

    return in_its_own_thread
