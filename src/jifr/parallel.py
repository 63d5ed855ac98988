"""Splitting a compiled loop's rows into parts run on numba's threads, one part per torch thread."""

from __future__ import annotations

from typing import Any

import numba
import torch


def run_in_parts(loop: Any, parallel_loop: Any, arrays: list[Any], n: int) -> None:
    """Run a compiled loop over its ``n`` rows: ``loop(0, n, *arrays)`` on this thread, or
    ``parallel_loop(*arrays, parts)`` in ``thread_parts(n)`` parts where that is more than one."""
    parts = thread_parts(n)
    if parts > 1:
        parallel_loop(*arrays, parts)
    else:
        loop(0, n, *arrays)


def thread_parts(n: int) -> int:
    """How many parts to split ``n`` rows into for the compiled loops: one per torch thread
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``), at most n and at most numba's threads. With
    one, numba's threads are never started (asking numba for its thread count starts them)."""
    parts = min(n, torch.get_num_threads())
    return 1 if parts <= 1 else min(parts, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
