"""Exact top-K items of users, with known items excluded, in bounded memory.

``top_k_items`` is the one entry point the recommender, the service and the export use. Ties are
broken towards the lower item index, so the result equals a stable descending sort of
``model.score_all`` with the excluded items removed (a NaN score counts as -inf), bit for bit:
the scores are those ``score_all`` gives the same block of users (float32 matmuls of another
batch size may differ in the last bit).

Both paths rest on one fact: given a threshold t that at least k items reach, the k-th best
score is at least t, so an item that cannot reach t is neither in the top k nor tied with it.
- A model whose ``score_all`` is cheap (a matmul) is scored in full; the items at or above a
  one-pass threshold (``_threshold``), ties included, are sorted stably (``torch.topk`` alone
  is not stable).
- A model with ``score_bounds`` (JIFR's rating attention) is scored exactly only on the items
  whose upper bound reaches a threshold from the lower bounds or from the exact scores of a few
  likely top items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from jifr.device import CPU
from jifr.models.base import Recommender, ScoreBounds

SCORE_BUDGET = 2**24  # user x item scores (or bounds) held at once
EXACT_BUDGET = 2**16  # candidate pairs scored exactly per ``ScoreBounds.exact`` call
# Items per user scored exactly first, where the bounds alone leave more candidates (at least k).
# 256 rather than 64: on JIFR with random weights the slowest of 50 one-user requests took 41 ms
# instead of 54 ms at 1M items, and 2.2 ms instead of 3.9 ms at 12.7k (bench/bench_serving.py).
PROBES = 256
INF = float("inf")


def _nan_as(values: Tensor, fill: float) -> Tensor:
    """A copy of ``values`` with NaN replaced by ``fill`` (and infinities kept)."""
    return torch.nan_to_num(values, nan=fill, posinf=INF, neginf=-INF)


def _user_blocks(n_users: int, n_items: int) -> list[slice]:
    step = max(1, SCORE_BUDGET // max(n_items, 1))
    return [slice(s, min(s + step, n_users)) for s in range(0, n_users, step)]


def _excluded(users: np.ndarray, exclude: sp.csr_matrix | None) -> tuple[Tensor, Tensor] | None:
    """(rows, items) of the excluded items of ``users`` (B,): rows index ``users``; None if none."""
    if exclude is None:
        return None
    starts, ends = exclude.indptr[users], exclude.indptr[users + 1]  # the CSR rows, read in place
    counts = ends - starts
    total = int(counts.sum())
    if not total:
        return None
    rows = np.repeat(np.arange(len(users)), counts)
    positions = np.arange(total) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return torch.as_tensor(rows), torch.as_tensor(exclude.indices[positions], dtype=torch.long)


def _set(values: Tensor, pairs: tuple[Tensor, Tensor] | None, value: float) -> Tensor:
    """``values`` with ``value`` at ``pairs``, in place."""
    if pairs is not None:
        values[pairs] = value
    return values


def _chunk_maxima(values: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(B, n) the largest value in each of ``n`` contiguous chunks of every row of ``values``
    (B, N), 1 <= n <= N, and (B, n) its column. One pass over ``values``, no copy."""
    width = values.shape[1] // n
    best, column = values[:, : width * (n - 1)].reshape(len(values), n - 1, width).max(2)
    last, last_column = values[:, width * (n - 1) :].max(1, keepdim=True)
    column = column + torch.arange(n - 1, device=values.device) * width
    return torch.cat([best, last], 1), torch.cat([column, last_column + width * (n - 1)], 1)


def _threshold(values: Tensor, k: int) -> Tensor:
    """(B, 1) a value that at least ``k`` entries of each row of ``values`` (B, N) reach, k <= N:
    the smallest of the maxima of k chunks, so at most the k-th largest value. Cheaper than
    ``torch.topk`` on a large catalogue (one pass), and nearly as high."""
    return _chunk_maxima(values, k)[0].amin(1, keepdim=True)


def _kth_largest(values: Tensor, k: int) -> Tensor:
    """(B, 1) the k-th largest value of each row of ``values`` (B, n), 1 <= k <= n."""
    return torch.topk(values, k, dim=1, sorted=False).values.amin(1, keepdim=True)


def _stable_top_k_of(rows: Tensor, items: Tensor, scores: Tensor, n_rows: int, k: int) -> tuple[Tensor, Tensor]:
    """(n_rows, k) best scores and their items among candidate pairs (``rows``, ``items``, ``scores``,
    each (n,), sorted by row and, within a row, by item), ties towards the lower item; -inf and
    -1 where a row has fewer than ``k`` candidates with a score above -inf."""
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(torch.bincount(rows, minlength=n_rows).cpu().numpy(), out=offsets[1:])
    return _best_k_of_segments(offsets, items, scores, k)


def _best_k_of_segments(offsets: np.ndarray, items: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``_stable_top_k_of`` given row r's candidates as [offsets[r], offsets[r + 1]): one pass over
    them (``jifr.ranking_loops``), on the CPU."""
    from jifr.ranking_loops import top_k_of_segments  # compiled (or loaded from numba's cache) on first use

    n_rows = len(offsets) - 1
    values = torch.full((n_rows, k), -INF, dtype=scores.dtype, device=CPU)
    chosen = torch.full((n_rows, k), -1, dtype=torch.long, device=CPU)
    candidate_items = np.ascontiguousarray(items.cpu().numpy(), dtype=np.int64)
    top_k_of_segments(offsets, candidate_items, scores.cpu().contiguous().numpy(), values.numpy(), chosen.numpy())
    return values, chosen


def _top_k_of_scores(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact stable top-``k`` of every row of ``scores`` (B, n_items), -inf where excluded."""
    candidates = (scores >= _threshold(scores, k)) & (scores > -INF)
    rows, items = candidates.nonzero(as_tuple=True)
    return _stable_top_k_of(rows, items, scores[rows, items], len(scores), k)


def _top_k_of_bounds(
    bounds: ScoreBounds, users: np.ndarray, exclude: sp.csr_matrix | None, k: int
) -> tuple[Tensor, Tensor]:
    """Exact stable top-``k`` from bounds. A threshold t with k items scoring at least t is a
    lower bound of the k-th best score, so an item whose upper bound is below t is not in the
    top ``k`` and ties no item that is. t comes from the lower bounds (``_threshold``) or, where
    that leaves more than ``PROBES`` candidates, from the exact scores of ``PROBES`` likely top
    items, if higher."""
    from jifr.ranking_loops import candidate_counts, candidates  # compiled on first use

    excluded = _excluded(users, exclude)
    # In place: the bounds are this call's own (a NaN score is -inf).
    lower = _set(torch.nan_to_num(bounds.lower, nan=-INF, posinf=INF, neginf=-INF, out=bounds.lower), excluded, -INF)
    upper = _set(torch.nan_to_num(bounds.upper, nan=INF, posinf=INF, neginf=-INF, out=bounds.upper), excluded, -INF)
    threshold = _threshold(lower, k)
    upper_array, counts = upper.numpy(), np.empty(len(upper), dtype=np.int64)
    candidate_counts(upper_array, threshold[:, 0].contiguous().numpy(), counts)
    if int(counts.max()) > PROBES:
        threshold = torch.maximum(threshold, _probed_threshold(bounds, lower, upper, k))
        candidate_counts(upper_array, threshold[:, 0].contiguous().numpy(), counts)
    offsets = np.zeros(len(upper) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    items = np.empty(offsets[-1] + 1, dtype=np.int64)  # a slot more: see ``candidates``
    candidates(upper_array, threshold[:, 0].contiguous().numpy(), offsets, items)
    row_tensor = torch.from_numpy(np.repeat(np.arange(len(upper), dtype=np.int64), counts))
    item_tensor = torch.from_numpy(items[:-1])
    scores = _nan_as(_exact_scores(bounds, row_tensor, item_tensor), -INF)
    return _best_k_of_segments(offsets, item_tensor, scores, k)


def _probed_threshold(bounds: ScoreBounds, lower: Tensor, upper: Tensor, k: int) -> Tensor:
    """(B, 1) the k-th best exact score of the items with the largest lower + upper bound in each
    of ``PROBES`` chunks of the catalogue (likely top items; -inf where fewer than k of them can be
    recommended)."""
    middle, probes = _chunk_maxima(lower + upper, min(max(PROBES, k), lower.shape[1]))
    rows = torch.arange(len(probes))[:, None].expand_as(probes)
    scores = _nan_as(_exact_scores(bounds, rows.flatten(), probes.flatten()), -INF).view_as(probes)
    return _kth_largest(torch.where(middle > -INF, scores, -INF), k)


def _exact_scores(bounds: ScoreBounds, rows: Tensor, items: Tensor) -> Tensor:
    """(n,) ``bounds.exact`` of the pairs, in chunks that bound its temporaries."""
    chunks = [
        bounds.exact(rows[s : s + EXACT_BUDGET], items[s : s + EXACT_BUDGET]) for s in range(0, len(rows), EXACT_BUDGET)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0)


@torch.no_grad()
def top_k_items(
    model: Recommender, users: Tensor, k: int, n_items: int, exclude: sp.csr_matrix | None = None
) -> tuple[Tensor, Tensor]:
    """(B, k) scores and (B, k) item indices of each user's ``k`` best items, best first.

    ``exclude`` (n_users x n_items, any stored entry excluded) removes items a user already
    knows. Where fewer than ``k`` items remain, the row ends with item -1 and score -inf. A model
    in eval mode keeps its item cache (after changing its weights, call ``model.train().eval()``).
    A model on a GPU scores and sorts there; the answer is on the CPU.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not model.ranks_items:
        raise ValueError(f"{model.model_name} does not rank items")
    model.eval()  # keeps the item cache of a model already in eval mode
    users = torch.as_tensor(users, dtype=torch.long)
    width = min(k, n_items)
    values = torch.full((len(users), k), -INF, device=CPU)  # the answer is on the CPU
    items = torch.full((len(users), k), -1, dtype=torch.long, device=CPU)
    if width == 0:
        return values, items
    for block in _user_blocks(len(users), n_items):
        indices = users[block].numpy()
        bounds = model.score_bounds(model.on_device(users[block]))
        if bounds is None:
            scores = _nan_as(model.score_all(model.on_device(users[block])), -INF)
            excluded = _excluded(indices, exclude)
            if excluded is not None:
                excluded = (excluded[0].to(scores.device), excluded[1].to(scores.device))
            best, chosen = _top_k_of_scores(_set(scores, excluded, -INF), width)
            values[block, :width], items[block, :width] = best.cpu(), chosen.cpu()
        else:
            values[block, :width], items[block, :width] = _top_k_of_bounds(bounds, indices, exclude, width)
    return values, items
