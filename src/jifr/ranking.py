"""Exact top-K items of users, with known items excluded, in bounded memory.

``top_k_items`` is the one entry point the recommender, the service and the export use. Ties are
broken towards the lower item index, so the result equals a stable descending sort of
``model.score_all`` with the excluded items removed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from jifr.models.base import Recommender

SCORE_BUDGET = 2**24  # user x item scores held at once


def _user_blocks(n_users: int, n_items: int) -> list[slice]:
    step = max(1, SCORE_BUDGET // max(n_items, 1))
    return [slice(s, min(s + step, n_users)) for s in range(0, n_users, step)]


def _excluded(scores: Tensor, users: np.ndarray, exclude: sp.csr_matrix) -> None:
    rows = exclude[users]
    counts = np.diff(rows.indptr)
    if rows.nnz:
        scores[torch.as_tensor(np.repeat(np.arange(len(users)), counts)), torch.as_tensor(rows.indices)] = float("-inf")


def _stable_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` of each row, ties towards the lower column; -1 / -inf where a row has fewer than
    ``k`` finite scores."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    values = scores.gather(1, order)
    order = torch.where(torch.isfinite(values), order, -1)
    return values, order


@torch.no_grad()
def top_k_items(
    model: Recommender, users: Tensor, k: int, n_items: int, exclude: sp.csr_matrix | None = None
) -> tuple[Tensor, Tensor]:
    """(B, k) scores and (B, k) item indices of each user's ``k`` best items, best first.

    ``exclude`` (n_users x n_items, any stored entry excluded) removes items a user already
    knows. Where fewer than ``k`` items remain, the row ends with item -1 and score -inf.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not model.ranks_items:
        raise ValueError(f"{model.model_name} does not rank items")
    model.eval()
    users = torch.as_tensor(users, dtype=torch.long)
    width = min(k, n_items)
    values = torch.full((len(users), k), float("-inf"))
    items = torch.full((len(users), k), -1, dtype=torch.long)
    for block in _user_blocks(len(users), n_items):
        scores = model.score_all(users[block]).clone()
        if exclude is not None:
            _excluded(scores, users[block].numpy(), exclude)
        values[block, :width], items[block, :width] = _stable_top_k(scores, width)
    return values, items
