"""JIFR's rating attention (eqs. 8-10) for many (user, item) pairs, compiled with numba.

For a pair whose collaborative and visual dot products are c = u_a.v_i and s = w_a.x_i, with
W2's user half (plus its bias) applied to u_a and w_a and its item half to v_i and x_i:

    gap  = sum_h w2_h (relu(W2 [w_a, x_i])_h - relu(W2 [u_a, v_i])_h)   (float32, h in order)
    beta = 1 / (1 + exp(-gap))                                          (float64, then float32)
    r_ai = c + beta (s - c)                                             (float32)

Every pair takes exactly these operations in this order, whichever function scores it, so a
pair's score has the same bits in any batch: ``score_all`` (``grid``) and the exact scores
that top-K ranking computes (``top_k``) agree bit for bit. No fastmath: the sum is not
reassociated and no multiply-add is fused. ``grid`` runs the hidden units in the outer loop
and the items in the inner one, which LLVM vectorises across items without changing any pair's
order of operations. A ReLU keeps NaN (``x < 0`` is false for NaN), so a NaN weight gives a
NaN score, which ranking counts as -inf.

``top_k`` finds each user's best k items while scoring only a few exactly: r_ai moves
monotonically with beta between c and s, and beta is bounded per pair without a pass over the
hidden units (``jifr.models.jifr._pair_terms``), so an item whose bound cannot reach the k-th
best exact score of a few likely top items is skipped.

The loops keep the GIL: in a service, a short loop that released it would then wait for other
threads to hand it back (``bench/bench_load.py`` served 277 requests/s with the GIL released;
369 and 337 in two runs without). ``grid_parallel`` and ``top_k_parallel`` split the users
into parts run on numba's threads, one part per torch thread (``jifr.models.jifr`` chooses);
with one torch thread, as ``jifr serve`` is benchmarked, everything runs on one. Every pair
takes the same operations on any thread: the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from jifr.ranking_loops import emit_best_first, offer

FLOAT32_EPS = float(np.finfo(np.float32).eps)


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
def grid(first: int, last: int, inputs: tuple, out: np.ndarray) -> None:
    """``out[a]`` = r_ai of users a in [first, last) (of B) and all N items. ``inputs`` is the
    attention's inputs: ``collab`` and ``visual`` (B, N) the dot products, ``collab_user`` and
    ``visual_user`` (B, H) the user parts, ``collab_item`` and ``visual_item`` (H, N) the item
    parts, hidden-major, and w2 (H,); all float32."""
    collab, visual, collab_user, visual_user, collab_item, visual_item, w2 = inputs
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
def grid_parallel(inputs: tuple, out: np.ndarray, parts: int) -> None:
    """``grid`` of every user, the users split into ``parts`` runs computed on numba's threads
    (each pair takes the same operations: the same bits)."""
    n = inputs[0].shape[0]
    for part in prange(parts):
        grid(part * n // parts, (part + 1) * n // parts, inputs, out)


@njit(cache=True, inline="always")
def _pair_score(
    a: int,
    i: int,
    collab: np.ndarray,
    visual: np.ndarray,
    collab_user: np.ndarray,
    visual_user: np.ndarray,
    collab_item: np.ndarray,
    visual_item: np.ndarray,
    w2: np.ndarray,
) -> np.float32:
    """r_ai of row a and item i, with ``grid``'s operations in ``grid``'s order (its bits).
    (The hot loops take arrays, not tuples: an array taken from a tuple in a loop costs a
    reference count each time.)"""
    gap = np.float32(0)
    for h in range(w2.shape[0]):
        gap = gap + _unit_term(w2[h], collab_user[a, h], collab_item[h, i], visual_user[a, h], visual_item[h, i])
    return _mixed(collab[a, i], visual[a, i], gap)


@njit(cache=True)
def pair_scores(rows: np.ndarray, items: np.ndarray, inputs: tuple, out: np.ndarray) -> None:
    """``out[p]`` = r_ai of the pairs (``rows[p]``, ``items[p]``), with ``grid``'s bits."""
    collab, visual, collab_user, visual_user, collab_item, visual_item, w2 = inputs
    for p in range(len(rows)):
        out[p] = _pair_score(rows[p], items[p], collab, visual, collab_user, visual_user, collab_item, visual_item, w2)


@njit(cache=True, inline="always")
def _logit_low(user: np.ndarray, a: int, item: np.ndarray, i: int, at: int) -> float:
    """The smallest logit w2 . f(x + y) of eq. (9) that the terms of user a's part x and item i's
    part y allow (``jifr.models.jifr._pair_terms``, columns ``at`` to ``at + 2``: sum w2_h f(.),
    sum min(0, w2_h .), sum max(0, w2_h .)); float64, NaN if either end is."""
    return _greatest(user[a, at] + item[i, at + 1], item[i, at] + user[a, at + 1])


@njit(cache=True, inline="always")
def _logit_high(user: np.ndarray, a: int, item: np.ndarray, i: int, at: int) -> float:
    """The largest logit that the same terms allow."""
    return _least(user[a, at] + item[i, at + 2], item[i, at] + user[a, at + 2])


@njit(cache=True, inline="always")
def _upper_bound(
    collab: np.float32,
    visual: np.float32,
    item_terms: np.ndarray,
    i: int,
    user_terms: np.ndarray,
    a: int,
    beta_low: np.float32,
    beta_high: np.float32,
    slack: np.float32,
    margin: float,
) -> np.float32:
    """An upper bound on r_ai = c + beta (s - c) from the range of the pair's own beta (the
    logits' ranges, the gap's widened by ``margin`` for the float32 rounding of the exact gap,
    through the sigmoid, widened by a float32 epsilon) within the user's [``beta_low``,
    ``beta_high``] (a NaN end falls back to those). r_ai grows with beta where s >= c, so only
    one end is needed: one exp. The same float32 operations as r_ai with a beta at least as far
    out, then ``slack``: rounding is monotone, so the bound holds. NaN where c or s is NaN (then
    so is r_ai)."""
    difference = visual - collab
    if difference >= 0:  # the largest beta: the largest visual logit less the smallest collaborative one
        gap = _logit_high(user_terms, a, item_terms, i, 3) - _logit_low(user_terms, a, item_terms, i, 0)
        beta = np.float32(1.0 / (1.0 + math.exp(-(gap + margin))) + FLOAT32_EPS)
        if not beta < beta_high:  # NaN too
            beta = beta_high
    else:  # the smallest beta (NaN differences end here, and stay NaN)
        gap = _logit_low(user_terms, a, item_terms, i, 3) - _logit_high(user_terms, a, item_terms, i, 0)
        beta = np.float32(1.0 / (1.0 + math.exp(-(gap - margin))) - FLOAT32_EPS)
        if not beta > beta_low:
            beta = beta_low
    return (difference * beta + collab) + slack


@njit(cache=True, inline="always")
def _coarse_upper_bound(
    collab: np.float32, visual: np.float32, beta_low: np.float32, beta_high: np.float32, slack: np.float32
) -> np.float32:
    """``_upper_bound`` from the user's beta range alone: no exp, for a first cut."""
    difference = visual - collab
    return (difference * (beta_high if difference >= 0 else beta_low) + collab) + slack


@njit(cache=True)
def top_k(
    first: int, last: int, inputs: tuple, guess: np.ndarray, bounds: tuple, n_probes: int, outputs: tuple
) -> None:
    """The best k items of rows a in [first, last) (of B), scoring few of the N items exactly.

    ``inputs`` as ``grid``'s, with ``collab`` NaN at excluded pairs; ``guess`` (N,) a beta per
    item to find likely top items. ``bounds``: ``item_terms`` (N, 6) and ``user_terms`` (B, 6)
    the per-pair logit bounds' terms (``jifr.models.jifr._pair_terms``, float64), each user's
    smallest and largest beta over all items (B, 2), a rounding slack on r_ai (B,) (float32 both)
    and one on the gap (B,) (float64). ``outputs``: the scores and items (B, k), filled with
    -inf and -1 by the caller, best first (a stable descending order, ties to the lower item, as
    ``jifr.ranking_loops.top_k_of_segments``), and how many items each row scored exactly (B,).
    Per row:

    1. probes: the ``n_probes`` (>= k) items with the best guessed score c + guess_i (s - c),
       scored exactly; t = their k-th best score (-inf if fewer than k are above -inf). k
       items score at least t, so the k-th best score is at least t.
    2. every item whose upper bound reaches t (``_coarse_upper_bound``, then ``_upper_bound``)
       is scored exactly, in item order, into a heap of the best k: an item whose bound is
       below t is neither among them nor tied with them.
    Excluded and NaN pairs are never kept (a NaN score counts as -inf: never recommended).
    """
    collab, visual, collab_user, visual_user, collab_item, visual_item, w2 = inputs
    item_terms, user_terms, beta_range, slack, margin = bounds
    out_scores, out_items, scored = outputs
    n_items, k = collab.shape[1], out_scores.shape[1]
    probe_keys, probe_items = np.empty(n_probes, dtype=np.float32), np.empty(n_probes, dtype=np.int64)
    probe_scores = np.empty(n_probes, dtype=np.float32)
    heap_scores, heap_items = np.empty(k, dtype=np.float32), np.empty(k, dtype=np.int64)
    coarse = np.empty(n_items + 1, dtype=np.int64)  # a slot more: see step 2
    for a in range(first, last):
        # 1. The probes: the best guesses.
        size, worst = 0, np.float32(-np.inf)
        for i in range(n_items):
            c = collab[a, i]
            key = c + guess[i] * (visual[a, i] - c)
            if size < n_probes or key > worst:
                size = offer(probe_keys, probe_items, size, key, i)
                worst = probe_keys[0] if size == n_probes else np.float32(-np.inf)
        threshold = np.float32(-np.inf)
        if size >= k:
            for p in range(size):
                score = _pair_score(
                    a, probe_items[p], collab, visual, collab_user, visual_user, collab_item, visual_item, w2
                )
                probe_scores[p] = score if score == score else -np.inf
            threshold = np.sort(probe_scores[:size])[size - k]
        # 2. The items whose coarse bound reaches the threshold, listed without a branch (every
        # item is written, only those move past it: a branch would be mispredicted often).
        low, high, rounding, gap_margin = beta_range[a, 0], beta_range[a, 1], slack[a], margin[a]
        listed = 0
        for i in range(n_items):
            coarse[listed] = i
            listed += int(_coarse_upper_bound(collab[a, i], visual[a, i], low, high, rounding) >= threshold)  # not NaN
        # 3. Those whose own bound reaches it too, scored exactly; the best k kept.
        size, count = 0, 0
        for at in range(listed):
            i = coarse[at]
            c, s = collab[a, i], visual[a, i]
            if _upper_bound(c, s, item_terms, i, user_terms, a, low, high, rounding, gap_margin) >= threshold:
                score = _pair_score(a, i, collab, visual, collab_user, visual_user, collab_item, visual_item, w2)
                size = offer(heap_scores, heap_items, size, score, i)
                count += 1
        emit_best_first(heap_scores, heap_items, size, out_scores, out_items, a)
        scored[a] = count


@njit(cache=True, parallel=True)
def top_k_parallel(inputs: tuple, guess: np.ndarray, bounds: tuple, n_probes: int, outputs: tuple, parts: int) -> None:
    """``top_k`` of every row, the rows split into ``parts`` runs on numba's threads."""
    n = inputs[0].shape[0]
    for part in prange(parts):
        top_k(part * n // parts, (part + 1) * n // parts, inputs, guess, bounds, n_probes, outputs)


@njit(cache=True)
def upper_bounds(collab: np.ndarray, visual: np.ndarray, bounds: tuple, out: np.ndarray) -> None:
    """``out`` (B, N): the upper bound ``top_k`` prunes with (the smaller of ``_coarse_upper_bound``
    and ``_upper_bound``), of every pair; for checking it (``top_k`` never fills such a matrix)."""
    item_terms, user_terms, beta_range, slack, margin = bounds
    for a in range(collab.shape[0]):
        low, high = beta_range[a, 0], beta_range[a, 1]
        for i in range(collab.shape[1]):
            c, s = collab[a, i], visual[a, i]
            coarse = _coarse_upper_bound(c, s, low, high, slack[a])
            out[a, i] = min(coarse, _upper_bound(c, s, item_terms, i, user_terms, a, low, high, slack[a], margin[a]))


@njit(cache=True, inline="always")
def _least(a: float, b: float) -> float:
    """The smaller of a and b, NaN where either is NaN (as ``torch.minimum``)."""
    return a if (a < b or a != a) else b


@njit(cache=True, inline="always")
def _greatest(a: float, b: float) -> float:
    """The larger of a and b, NaN where either is NaN (as ``torch.maximum``)."""
    return a if (a > b or a != a) else b
