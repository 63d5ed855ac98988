"""Exact top-K ranking's passes over many candidates, compiled with numba (``jifr.ranking``).

``candidate_counts`` and ``candidates``: the (row, item) pairs whose upper bound reaches the
row's threshold, in one pass to count them and one to list them, row by row and in increasing
item order.

``top_k_of_segments``: the best k of each row's candidates, in one pass. Candidates come as one
flat list, row after row and, within a row, in increasing item order (the order of
``Tensor.nonzero`` and of ``candidates``). Each row keeps a heap of its k best so far, the
worst on top; a candidate enters only when it scores strictly above that worst one. As items
arrive in increasing order, an equal score never displaces an earlier item, so the k kept are
the first k of a stable descending sort (ties to the lower item), and they come out in that
order. A candidate scored -inf is never kept: rows with fewer than k others end with score
-inf and item -1. Scores must hold no NaN (ranking turns them into -inf first).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _worse(score_a: np.float32, item_a: np.int64, score_b: np.float32, item_b: np.int64) -> bool:
    """Whether (score_a, item_a) comes after (score_b, item_b) in a stable descending order."""
    return bool(score_a < score_b or (score_a == score_b and item_a > item_b))


@njit(cache=True)
def _sift_down(scores: np.ndarray, items: np.ndarray, size: int, at: int) -> None:
    """Restore the heap (the worst entry at 0) below ``at``."""
    while True:
        worst, left, right = at, 2 * at + 1, 2 * at + 2
        if left < size and _worse(scores[left], items[left], scores[worst], items[worst]):
            worst = left
        if right < size and _worse(scores[right], items[right], scores[worst], items[worst]):
            worst = right
        if worst == at:
            return
        scores[at], scores[worst] = scores[worst], scores[at]
        items[at], items[worst] = items[worst], items[at]
        at = worst


@njit(cache=True, inline="always")
def _emit(
    heap_scores: np.ndarray, heap_items: np.ndarray, size: int, out_scores: np.ndarray, out_items: np.ndarray, row: int
) -> None:
    """Write a row's heap of ``size`` entries to ``out_*[row]``, best first."""
    if size < len(heap_scores):
        for at in range(size // 2 - 1, -1, -1):
            _sift_down(heap_scores, heap_items, size, at)
    for slot in range(size - 1, -1, -1):  # pop the worst to the back
        out_scores[row, slot], out_items[row, slot] = heap_scores[0], heap_items[0]
        heap_scores[0], heap_items[0] = heap_scores[slot], heap_items[slot]
        _sift_down(heap_scores, heap_items, slot, 0)


@njit(cache=True)
def top_k_of_segments(
    offsets: np.ndarray, items: np.ndarray, scores: np.ndarray, out_scores: np.ndarray, out_items: np.ndarray
) -> None:
    """``out_scores`` and ``out_items`` (n_rows, k), filled with -inf and -1 by the caller: the k
    best candidates of each row, best first. Row r's candidates are ``items`` and ``scores``
    [offsets[r], offsets[r + 1]), in increasing item order."""
    k = out_scores.shape[1]
    if k == 0:
        return
    heap_scores = np.empty(k, dtype=scores.dtype)
    heap_items = np.empty(k, dtype=np.int64)
    for row in range(len(offsets) - 1):
        p, end, size = offsets[row], offsets[row + 1], 0
        while p < end and size < k:  # the first k above -inf fill the heap
            if scores[p] > -np.inf:
                heap_scores[size], heap_items[size] = scores[p], items[p]
                size += 1
            p += 1
        if size == k:
            for at in range(k // 2 - 1, -1, -1):
                _sift_down(heap_scores, heap_items, k, at)
            worst = heap_scores[0]
            while p < end:  # then a candidate enters only strictly above the worst kept
                if scores[p] > worst:
                    heap_scores[0], heap_items[0] = scores[p], items[p]
                    _sift_down(heap_scores, heap_items, k, 0)
                    worst = heap_scores[0]
                p += 1
        _emit(heap_scores, heap_items, size, out_scores, out_items, row)


@njit(cache=True)
def candidate_counts(upper: np.ndarray, threshold: np.ndarray, out: np.ndarray) -> None:
    """``out`` (B,) = the number of items i of each row r with -inf < upper[r, i] >= threshold[r]."""
    for row in range(upper.shape[0]):
        t, count = threshold[row], 0
        for i in range(upper.shape[1]):
            u = upper[row, i]
            if u >= t and u > -np.inf:
                count += 1
        out[row] = count


@njit(cache=True)
def candidates(upper: np.ndarray, threshold: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> None:
    """``items`` [offsets[r], offsets[r + 1]) = row r's items counted by ``candidate_counts``
    (whose running sum ``offsets`` is), in increasing item order. ``items`` holds one slot more
    than the candidates: every item is written and only a candidate moves past it (no branch)."""
    for row in range(upper.shape[0]):
        t, at = threshold[row], offsets[row]
        for i in range(upper.shape[1]):
            u = upper[row, i]
            items[at] = i
            at += (u >= t) & (u > -np.inf)
