"""k-core filtering of implicit interactions."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def k_core_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Rows kept by iterative k-core filtering: every kept user has >= ``min_user`` kept
    interactions and every kept item >= ``min_item``. ``users``/``items`` are (n,) int codes.

    Each round's removals are logged, so nothing is dropped silently. Rounds run until nothing
    changes (each removes at least one row, so at most ``len(users)`` of them): a fixed cap
    would return a mask that is not a k-core on long removal chains.
    """
    if min_user < 1 or min_item < 1:
        raise ValueError("k-core thresholds must be >= 1")
    keep = np.ones(len(users), dtype=bool)
    if len(users) == 0:
        return keep
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    round_index = 0
    while True:
        round_index += 1
        user_counts = np.bincount(users[keep], minlength=n_users)
        item_counts = np.bincount(items[keep], minlength=n_items)
        survive = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        removed = int(keep.sum() - survive.sum())
        if removed == 0:
            return keep
        log.info("k-core round %d: removed %d interaction(s)", round_index, removed)
        keep = survive
