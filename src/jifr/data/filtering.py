"""k-core filtering of implicit interactions."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def k_core_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Rows kept by iterative k-core filtering: every kept user has >= ``min_user`` kept
    interactions and every kept item >= ``min_item``. ``users``/``items`` are (n,) int codes.

    Each round's removals are logged, so nothing is dropped silently.
    """
    if min_user < 1 or min_item < 1:
        raise ValueError("k-core thresholds must be >= 1")
    keep = np.ones(len(users), dtype=bool)
    for round_index in range(1, 1000):
        user_counts = np.bincount(users[keep], minlength=int(users.max()) + 1)
        item_counts = np.bincount(items[keep], minlength=int(items.max()) + 1)
        survive = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        removed = int(keep.sum() - survive.sum())
        if removed == 0:
            break
        log.info("k-core round %d: removed %d interaction(s)", round_index, removed)
        keep = survive
    return keep
