"""Per-item sums of frame features with NumPy's bits, compiled with numba (``FrameStore.item_means``).

``np.add.reduceat(block, starts, axis=0)`` adds each item's rows down the strided axis, which
NumPy runs one column at a time: about 0.14 GFLOP/s, 3.8 s for the paper-scale set's 127,040
frames of 4,096 features. ``item_sums`` computes the same sums with the columns innermost
(vectorised), adding in NumPy's order, so every sum is the same to the last bit: the item's
first row plus NumPy's pairwise sum of the others (``_pairwise``: a plain running sum for fewer
than 8 rows; 8 running sums combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then
the remaining rows, for up to 128; halves split at a multiple of 8 beyond). No ``fastmath``:
the compiler may not reorder the additions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

UNROLL = 8  # NumPy's pairwise sum keeps 8 running sums
BLOCK = 128  # and splits runs of more rows than this in two


@njit(cache=True)
def item_sums(block: np.ndarray, starts: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """``out[s] = np.add.reduceat(block, starts, axis=0)[s]`` for items s whose ``counts[s]``
    (>= 1) rows of float32 ``block`` begin at row ``starts[s]``, bit for bit."""
    rest = np.empty(block.shape[1], dtype=block.dtype)
    for s in range(starts.shape[0]):
        first, n = starts[s], counts[s]
        out[s, :] = block[first]
        if n > 1:
            _pairwise(block, first + 1, n - 1, rest)
            for d in range(block.shape[1]):
                out[s, d] = out[s, d] + rest[d]


@njit(cache=True)
def _pairwise(block: np.ndarray, first: int, n: int, out: np.ndarray) -> None:
    """``out`` = NumPy's pairwise sum of the ``n`` (>= 1) rows of ``block`` from row ``first``."""
    width = block.shape[1]
    if n < UNROLL:
        out[:] = block[first]  # NumPy starts from -0.0, which adds nothing, signed zeros included
        for i in range(first + 1, first + n):
            for d in range(width):
                out[d] = out[d] + block[i, d]
    elif n <= BLOCK:
        sums = block[first : first + UNROLL].copy()
        i = UNROLL
        while i < n - n % UNROLL:
            for j in range(UNROLL):
                for d in range(width):
                    sums[j, d] = sums[j, d] + block[first + i + j, d]
            i += UNROLL
        for d in range(width):
            out[d] = ((sums[0, d] + sums[1, d]) + (sums[2, d] + sums[3, d])) + (
                (sums[4, d] + sums[5, d]) + (sums[6, d] + sums[7, d])
            )
        for k in range(first + i, first + n):
            for d in range(width):
                out[d] = out[d] + block[k, d]
    else:
        half = n // 2
        half -= half % UNROLL
        second = np.empty(width, dtype=block.dtype)
        _pairwise(block, first, half, out)
        _pairwise(block, first + half, n - half, second)
        for d in range(width):
            out[d] = out[d] + second[d]
