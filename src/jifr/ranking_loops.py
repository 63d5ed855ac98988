"""The best k of each row's candidates in one pass, compiled with numba (``jifr.ranking``).

``top_k_of_segments``: candidates come as one flat list, row after row and, within a row, in
increasing item order (the order of ``Tensor.nonzero``). Each row keeps a heap of its k best so far, the
worst on top; a candidate enters only when it scores strictly above that worst one. As items
arrive in increasing order, an equal score never displaces an earlier item, so the k kept are
the first k of a stable descending sort (ties to the lower item), and they come out in that
order. A candidate scored -inf is never kept: rows with fewer than k others end with score
-inf and item -1. Scores must hold no NaN (ranking turns them into -inf first).

``offer`` and ``emit_best_first`` are the heap's steps, which JIFR's pruned top-K
(``jifr.models.rating_attention.top_k``) shares.
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
def emit_best_first(
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
        size = 0
        for p in range(offsets[row], offsets[row + 1]):
            size = offer(heap_scores, heap_items, size, scores[p], items[p])
        emit_best_first(heap_scores, heap_items, size, out_scores, out_items, row)


@njit(cache=True, inline="always")
def offer(heap_scores: np.ndarray, heap_items: np.ndarray, size: int, score: np.float32, item: int) -> int:
    """Offer (``score``, ``item``) to a heap of the best len(heap_scores) of a row's candidates
    so far, ``size`` of them filled, the worst on top; returns the new size. The first ones above
    -inf fill it (arranged into a heap once full); then a candidate enters only strictly above
    the worst kept, so among equal scores the earlier candidate stays."""
    k = len(heap_scores)
    if size < k:
        if score > -np.inf:  # not NaN either
            heap_scores[size], heap_items[size] = score, item
            size += 1
            if size == k:
                for at in range(k // 2 - 1, -1, -1):
                    _sift_down(heap_scores, heap_items, k, at)
    elif score > heap_scores[0]:
        heap_scores[0], heap_items[0] = score, item
        _sift_down(heap_scores, heap_items, k, 0)
    return size
