"""Freed memory kept for reuse while a model trains (glibc's malloc on Linux).

A training step allocates and frees the same large blocks step after step: activations, their
gradients, products of a few MB to a few tens of MB each. glibc serves a block above its mmap
threshold from a fresh mapping, unmaps it when freed, and trims the top of its heap beyond
another threshold; it raises both only as it sees large blocks freed. So whether each step
faults its pages in again (a minor page fault and a zeroed page for every 4 KB) depends on what
the process did before: a fresh process training paper-scale JIFR in a loop of its own faulted
9,300-13,900 times per step, while ``fit``, after its epoch's large arrays were freed, faulted
far less. ``keep_freed_memory`` sets malloc to serve blocks up to 32 MiB (glibc's largest
threshold on 64-bit) from its heap and to keep up to 1 GiB of free heap, so a step reuses the
pages the step before freed (2,000-3,100 faults per step in that loop) whatever came before,
and puts the settings back when the block ends. The values computed are the same bit for bit;
only where memory comes from changes.

``jifr.train.fit`` trains inside it. ``JIFR_KEEP_FREED_MEMORY=0`` turns it off, and it leaves
alone a process whose environment sets malloc's thresholds. Without glibc (macOS, Windows,
musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEPT_MMAP_THRESHOLD = 32 * 2**20  # blocks up to this size come from the heap
KEPT_TRIM_THRESHOLD = 2**30  # free heap kept before the top is handed back
DEFAULT_THRESHOLD = 128 * 2**10  # glibc's initial value of both

_lock = threading.Lock()
_depth = 0  # blocks of keep_freed_memory open in this process


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (it has ``mallopt`` and ``malloc_trim``),
    looked up once."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


def enabled() -> bool:
    """Whether ``keep_freed_memory`` changes anything: ``JIFR_KEEP_FREED_MEMORY`` is not 0, and
    the process's environment does not set malloc's thresholds itself (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc`` tunables): those settings are left as given."""
    if os.environ.get("JIFR_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    configured = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    return not any(name in os.environ for name in configured) and "glibc.malloc." not in os.environ.get(
        "GLIBC_TUNABLES", ""
    )


def is_kept() -> bool:
    """Whether a block of ``keep_freed_memory`` is open and its settings took."""
    return _depth > 0


def _set_thresholds(libc: ctypes.CDLL, mmap_threshold: int, trim_threshold: int) -> bool:
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within the block, freed memory stays with the process for reuse (see the module); yields
    whether the settings took. Blocks may nest, from any thread: the outermost one sets them
    and puts back glibc's initial thresholds (128 KiB, no longer adjusted as blocks are freed)
    when it ends, handing the free heap back to the system (``malloc_trim``)."""
    global _depth
    libc = _glibc() if enabled() else None
    with _lock:
        kept = libc is not None and (_depth > 0 or _set_thresholds(libc, KEPT_MMAP_THRESHOLD, KEPT_TRIM_THRESHOLD))
        _depth += kept
    try:
        yield kept
    finally:
        with _lock:
            _depth -= kept
            if kept and _depth == 0 and libc is not None:
                _set_thresholds(libc, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
                libc.malloc_trim(0)
