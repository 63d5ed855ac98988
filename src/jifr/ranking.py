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
- A model with ``pruned_top_k`` (JIFR's rating attention) scores exactly only the items whose
  upper bound reaches the k-th best exact score of a few likely top items
  (``jifr.models.rating_attention.top_k``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from jifr.device import CPU
from jifr.models.base import Recommender

SCORE_BUDGET = 2**24  # user x item scores held at once
INF = float("inf")
FLOAT32_MAX = torch.finfo(torch.float32).max


def _nan_as(values: Tensor, fill: float) -> Tensor:
    """``values`` with NaN replaced by ``fill`` (and infinities kept), in place."""
    return torch.nan_to_num(values, nan=fill, posinf=INF, neginf=-INF, out=values)


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


def _threshold(values: Tensor, k: int) -> Tensor:
    """(B, 1) a value that at least ``k`` entries of each row of ``values`` (B, N) reach, k <= N:
    the smallest of the maxima of k contiguous chunks, so at most the k-th largest value.
    Cheaper than ``torch.topk`` on a large catalogue (one pass, no copy), and nearly as high."""
    width = values.shape[1] // k
    maxima = values[:, : width * (k - 1)].reshape(len(values), k - 1, width).amax(2)
    last = values[:, width * (k - 1) :].amax(1, keepdim=True)
    return torch.cat([maxima, last], 1).amin(1, keepdim=True)


def _stable_top_k_of(rows: Tensor, items: Tensor, scores: Tensor, n_rows: int, k: int) -> tuple[Tensor, Tensor]:
    """(n_rows, k) best scores and their items among candidate pairs (``rows``, ``items``, ``scores``,
    each (n,), sorted by row and, within a row, by item), ties towards the lower item; -inf and
    -1 where a row has fewer than ``k`` candidates with a score above -inf. One pass over them
    (``jifr.ranking_loops``), on the CPU."""
    from jifr.ranking_loops import top_k_of_segments  # compiled (or loaded from numba's cache) on first use

    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(torch.bincount(rows, minlength=n_rows).cpu().numpy(), out=offsets[1:])
    values = torch.full((n_rows, k), -INF, dtype=scores.dtype, device=CPU)
    chosen = torch.full((n_rows, k), -1, dtype=torch.long, device=CPU)
    candidate_items = np.ascontiguousarray(items.cpu().numpy(), dtype=np.int64)
    top_k_of_segments(offsets, candidate_items, scores.cpu().contiguous().numpy(), values.numpy(), chosen.numpy())
    return values, chosen


def _top_k_of_scores(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact stable top-``k`` of every row of ``scores`` (B, n_items), -inf where excluded, none
    NaN: the candidates reach the threshold and are above -inf, in one comparison."""
    candidates = scores >= _threshold(scores, k).clamp(min=-FLOAT32_MAX)
    rows, items = candidates.nonzero(as_tuple=True)
    return _stable_top_k_of(rows, items, scores[rows, items], len(scores), k)


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
        excluded = _excluded(users[block].numpy(), exclude)
        pruned = model.pruned_top_k(model.on_device(users[block]), width, excluded)
        if pruned is not None:
            values[block, :width], items[block, :width] = pruned.values, pruned.items
            continue
        with model.reused_scores(users[block], n_items) as scores:
            _nan_as(scores, -INF)
            if excluded is not None:
                excluded = (excluded[0].to(scores.device), excluded[1].to(scores.device))
            best, chosen = _top_k_of_scores(_set(scores, excluded, -INF), width)
            values[block, :width], items[block, :width] = best.cpu(), chosen.cpu()
    return values, items
