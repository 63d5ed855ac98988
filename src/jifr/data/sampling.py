"""Vectorised negative sampling for training and for the sampled evaluation protocol."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class PositiveSet:
    """Fast membership test for (user, item) pairs, via sorted int64 keys."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        coo = matrix.tocoo()
        n_users, self.n_items = matrix.shape
        # Stored zeros are not positives, and a non-canonical matrix (repeated entries) must
        # not inflate the counts.
        held = coo.data != 0
        self.keys = np.unique(coo.row[held].astype(np.int64) * self.n_items + coo.col[held])
        self.counts = np.bincount(self.keys // self.n_items, minlength=n_users)  # (n_users,)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array of the broadcast shape of ``users`` and ``items``."""
        keys = np.asarray(users).astype(np.int64) * self.n_items + items
        if len(self.keys) == 0:
            return np.zeros(keys.shape, dtype=bool)
        where = np.searchsorted(self.keys, keys)
        where = np.minimum(where, len(self.keys) - 1)
        return self.keys[where] == keys


def sample_negatives(
    users: np.ndarray, n_negatives: int, positives: PositiveSet, rng: np.random.Generator
) -> np.ndarray:
    """(len(users), n_negatives) items drawn uniformly from each user's non-positives.

    Rejection sampling: draw all at once, redraw only the rejected cells until none is left.
    """
    n_items = positives.n_items
    if (positives.counts[users] >= n_items).any():
        raise ValueError("a user is positive on every item; no negative can be sampled")
    negatives = rng.integers(0, n_items, size=(len(users), n_negatives))
    bad = positives.contains(users[:, None], negatives)
    while bad.any():
        rows, cols = np.nonzero(bad)
        negatives[rows, cols] = rng.integers(0, n_items, size=len(rows))
        bad[rows, cols] = positives.contains(users[rows], negatives[rows, cols])
    return negatives


def sample_unrated(excluded: sp.csr_matrix, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``excluded`` (a block of users), ``n_samples`` distinct items it does not hold.

    Returns ``(items, valid)`` of shape (B, min(n_samples, n_items)); ``valid`` is False in the
    cells of users with fewer than ``n_samples`` available items (they get all of them).
    Uniform without replacement: the ``n_samples`` smallest of i.i.d. uniform keys.
    """
    n_users, n_items = excluded.shape
    n_take = min(n_samples, n_items)
    keys = rng.random((n_users, n_items))
    rows = np.repeat(np.arange(n_users), np.diff(excluded.indptr))
    held = excluded.data != 0  # a stored zero does not exclude its item
    keys[rows[held], excluded.indices[held]] = np.inf
    if n_take < n_items:
        items = np.argpartition(keys, n_take - 1, axis=1)[:, :n_take]
    else:
        items = np.broadcast_to(np.arange(n_items), (n_users, n_items)).copy()
    valid = np.isfinite(np.take_along_axis(keys, items, axis=1))
    return items, valid
