"""JIFR's rating attention (eqs. 8-10) for many (user, item) pairs, compiled with numba.

For a pair whose collaborative and visual dot products are c = u_a.v_i and s = w_a.x_i, with
W2's user half (plus its bias) applied to u_a and w_a and its item half to v_i and x_i:

    gap  = sum_h w2_h (relu(W2 [w_a, x_i])_h - relu(W2 [u_a, v_i])_h)   (float32, h in order)
    beta = 1 / (1 + exp(-gap))                                          (float64, then float32)
    r_ai = c + beta (s - c)                                             (float32)

Every pair takes exactly these operations in this order, whichever function scores it, so a
pair's score has the same bits in any batch: ``score_all`` (``grid``) and the exact scores of
the pairs that top-K ranking asks for (``pairs``) agree bit for bit. No fastmath: the sum is
not reassociated and no multiply-add is fused. ``grid``, and ``pairs`` for each user's run of
pairs, run the hidden units in the outer loop and the items in the inner one, which LLVM
vectorises across items without changing any pair's order of operations. A ReLU keeps NaN
(``x < 0`` is false for NaN), so a NaN weight gives a NaN score, which ranking counts as -inf.

The loops keep the GIL: in a service, a short loop that released it would then wait for other
threads to hand it back (``bench/bench_load.py`` served 277 requests/s with the GIL released;
369 and 337 in two runs without). ``grid_parallel`` and ``pairs_parallel`` split the users (the
pairs) into parts run on numba's threads, one part per torch thread (``jifr.models.jifr``
chooses); with one torch thread, as ``jifr serve`` is benchmarked, everything runs on one.
Every pair takes the same operations on any thread: the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _unit_term(
    weight: np.float32,
    collab_user: np.float32,
    collab_item: np.float32,
    visual_user: np.float32,
    visual_item: np.float32,
) -> np.float32:
    """w2_h (relu(W2 [w_a, x_i])_h - relu(W2 [u_a, v_i])_h) of one hidden unit h, in float32."""
    v = visual_user + visual_item
    if v < 0:
        v = np.float32(0)
    c = collab_user + collab_item
    if c < 0:
        c = np.float32(0)
    return weight * (v - c)


@njit(cache=True, inline="always")
def _mixed(collab: np.float32, visual: np.float32, gap: np.float32) -> np.float32:
    """r_ai = c + beta (s - c), beta = sigmoid(gap) taken in float64, then float32."""
    beta = np.float32(1.0 / (1.0 + math.exp(-np.float64(gap))))
    return collab + beta * (visual - collab)


@njit(cache=True)
def grid(
    first: int,
    last: int,
    collab: np.ndarray,
    visual: np.ndarray,
    collab_user: np.ndarray,
    visual_user: np.ndarray,
    collab_item: np.ndarray,
    visual_item: np.ndarray,
    w2: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[a]`` = r_ai of users a in [first, last) (of B) and all N items: ``collab`` and
    ``visual`` (B, N) their dot products, ``collab_user`` and ``visual_user`` (B, H) the user
    parts, ``collab_item`` and ``visual_item`` (H, N) the item parts, hidden-major; all float32."""
    n_items = collab.shape[1]
    gap = np.empty(n_items, dtype=np.float32)
    for a in range(first, last):
        gap[:] = 0
        for h in range(w2.shape[0]):
            weight, cu, vu = w2[h], collab_user[a, h], visual_user[a, h]
            for i in range(n_items):
                gap[i] = gap[i] + _unit_term(weight, cu, collab_item[h, i], vu, visual_item[h, i])
        for i in range(n_items):
            out[a, i] = _mixed(collab[a, i], visual[a, i], gap[i])


@njit(cache=True, parallel=True)
def grid_parallel(
    collab: np.ndarray,
    visual: np.ndarray,
    collab_user: np.ndarray,
    visual_user: np.ndarray,
    collab_item: np.ndarray,
    visual_item: np.ndarray,
    w2: np.ndarray,
    out: np.ndarray,
    parts: int,
) -> None:
    """``grid`` of every user, the users split into ``parts`` runs computed on numba's threads
    (each pair takes the same operations: the same bits)."""
    n = collab.shape[0]
    for part in prange(parts):
        first, last = part * n // parts, (part + 1) * n // parts
        grid(first, last, collab, visual, collab_user, visual_user, collab_item, visual_item, w2, out)


@njit(cache=True)
def pairs(
    first: int,
    last: int,
    collab: np.ndarray,
    visual: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    collab_user: np.ndarray,
    visual_user: np.ndarray,
    collab_item: np.ndarray,
    visual_item: np.ndarray,
    w2: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[p]`` = r_ai of the pairs (``rows[p]``, ``items[p]``), p in [first, last): ``collab``
    and ``visual`` (B, N) the dot products of every pair, ``collab_user`` and ``visual_user``
    (B, H) indexed by ``rows``, ``collab_item`` and ``visual_item`` (H, N) indexed by ``items``;
    the operations of ``grid``. Pairs of one user that follow each other (ranking lists them
    user by user) are taken as one run, the hidden units outside and the pairs inside, as
    ``grid`` does: for each unit the run's item parts are gathered into a contiguous buffer,
    which the loop over the pairs reads in order (it vectorises); each pair's sum still runs
    over the units in the same order."""
    gap = np.empty(last - first, dtype=np.float32)
    collab_run = np.empty(last - first, dtype=np.float32)  # one unit's item parts of a run's items
    visual_run = np.empty(last - first, dtype=np.float32)
    start = first
    while start < last:
        a = rows[start]
        end = start + 1
        while end < last and rows[end] == a:
            end += 1
        length = end - start
        run = gap[:length]
        run[:] = 0
        for h in range(w2.shape[0]):
            weight, cu, vu = w2[h], collab_user[a, h], visual_user[a, h]
            for q in range(length):
                i = items[start + q]
                collab_run[q], visual_run[q] = collab_item[h, i], visual_item[h, i]
            for q in range(length):
                run[q] = run[q] + _unit_term(weight, cu, collab_run[q], vu, visual_run[q])
        for q in range(length):
            i = items[start + q]
            out[start + q] = _mixed(collab[a, i], visual[a, i], run[q])
        start = end


@njit(cache=True, parallel=True)
def pairs_parallel(
    collab: np.ndarray,
    visual: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    collab_user: np.ndarray,
    visual_user: np.ndarray,
    collab_item: np.ndarray,
    visual_item: np.ndarray,
    w2: np.ndarray,
    out: np.ndarray,
    parts: int,
) -> None:
    """``pairs`` of every pair, split into ``parts`` slices computed on numba's threads (a run cut
    in two is two runs: each pair takes the same operations, the same bits)."""
    n = rows.shape[0]
    for part in prange(parts):
        first, last = part * n // parts, (part + 1) * n // parts
        pairs(first, last, collab, visual, rows, items, collab_user, visual_user, collab_item, visual_item, w2, out)


@njit(cache=True)
def bounds(
    collab: np.ndarray,
    visual: np.ndarray,
    beta_low: np.ndarray,
    beta_high: np.ndarray,
    slack: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> None:
    """``lower`` and ``upper`` (B, N): r_ai = c + beta (s - c) at beta_low[a] and beta_high[a],
    the smaller minus ``slack[a]`` and the larger plus it, from the dot products ``collab`` (c)
    and ``visual`` (s), (B, N); one pass, each value in float32 as its own operation. A NaN
    dot product gives NaN bounds, which ranking widens to (-inf, inf)."""
    for a in range(collab.shape[0]):
        low, high, margin = beta_low[a], beta_high[a], slack[a]
        for i in range(collab.shape[1]):
            c = collab[a, i]
            difference = visual[a, i] - c
            at_low, at_high = difference * low, difference * high
            lower[a, i] = (_least(at_low, at_high) + c) - margin
            upper[a, i] = (_greatest(at_low, at_high) + c) + margin


@njit(cache=True, inline="always")
def _least(a: np.float32, b: np.float32) -> np.float32:
    """The smaller of a and b, NaN where either is NaN (as ``torch.minimum``)."""
    return a if (a < b or a != a) else b


@njit(cache=True, inline="always")
def _greatest(a: np.float32, b: np.float32) -> np.float32:
    """The larger of a and b, NaN where either is NaN (as ``torch.maximum``)."""
    return a if (a > b or a != a) else b
