"""Torch work in a thread of its own: results and errors reach the caller, the caller's thread
count is kept, and the base loads in a thread that has ended when load_base returns (so the
OpenMP pool loading makes is not left in the caller's thread: adapters/own_thread.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from adapters.execution_plan import ExecutionPlan
from adapters.own_thread import in_own_thread, runs_in_own_thread


def test_the_work_runs_elsewhere_with_the_callers_thread_count() -> None:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen = in_own_thread(lambda: (threading.current_thread() is threading.main_thread(), torch.get_num_threads()))
    finally:
        torch.set_num_threads(saved)
    assert seen == (False, 1)


def test_errors_reach_the_caller_and_wrapped_functions_keep_their_name() -> None:
    @runs_in_own_thread
    def refuse(reason: str) -> None:
        raise ValueError(reason)

    with pytest.raises(ValueError, match="no weights"):
        refuse("no weights")
    assert refuse.__name__ == "refuse"


def test_the_base_loads_in_a_thread_that_ends(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adapters.base_model

    loaded_in: list[threading.Thread] = []
    real = adapters.base_model.load_nf4_model

    def load_nf4_model(*args: object, **kwargs: object) -> object:
        loaded_in.append(threading.current_thread())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(adapters.base_model, "load_nf4_model", load_nf4_model)
    base = adapters.base_model.load_base(tiny_model_dir, "cpu", plan=ExecutionPlan.from_name("nf4-fp32"))
    assert base.model is not None
    assert loaded_in and loaded_in[0] is not threading.current_thread() and not loaded_in[0].is_alive()
