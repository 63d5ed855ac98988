"""Splitting interactions into train / validation / test: random, leave-one-out, temporal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SplitMethod = Literal["random", "leave-one-out", "temporal"]
SPLIT_METHODS: tuple[str, ...] = ("random", "leave-one-out", "temporal")


@dataclass(frozen=True)
class SplitConfig:
    """How to split; ``ratios`` (train, valid, test) apply to the random and temporal splits."""

    method: SplitMethod = "random"
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ValueError(f"unknown split method {self.method!r}; choose from {', '.join(SPLIT_METHODS)}")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {self.ratios}")


def split_interactions(users: np.ndarray, timestamps: np.ndarray | None, config: SplitConfig) -> np.ndarray:
    """Part of each row: 0 train, 1 valid, 2 test. ``users`` is (n,) int; returns (n,) int8."""
    rng = np.random.default_rng(config.seed)
    if config.method == "random":
        return _cut_in_order(rng.permutation(len(users)), config.ratios)
    if timestamps is None:
        raise ValueError(f"the {config.method} split needs a 'timestamp' column in interactions")
    # Ties in time are broken by a seeded random key so the split is reproducible.
    tie_break = rng.random(len(users))
    if config.method == "temporal":
        return _cut_in_order(np.lexsort((tie_break, timestamps)), config.ratios)
    return _leave_one_out(users, timestamps, tie_break)


def split_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """(train, valid, test) row counts: train and valid are ``round(ratio * n)`` (Python's
    rounding, half to even), test the rest; a test ratio of 0 gives no test rows."""
    n_train = min(int(round(ratios[0] * n)), n)
    n_valid = min(int(round(ratios[1] * n)), n - n_train)
    if ratios[2] == 0:
        n_valid = n - n_train
    return n_train, n_valid, n - n_train - n_valid


def _cut_in_order(order: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    n_train, n_valid, _ = split_sizes(len(order), ratios)
    part = np.full(len(order), 2, dtype=np.int8)
    part[order[:n_train]] = 0
    part[order[n_train : n_train + n_valid]] = 1
    return part


def _leave_one_out(users: np.ndarray, timestamps: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Each user's latest interaction is test and the one before it validation (users with >= 3)."""
    order = np.lexsort((tie_break, timestamps, users))  # by user, then time
    sorted_users = users[order]
    is_last = np.r_[sorted_users[1:] != sorted_users[:-1], True]
    is_second_last = np.r_[is_last[1:], False] & ~is_last
    counts = np.bincount(users)
    eligible = counts[sorted_users] >= 3
    part = np.zeros(len(users), dtype=np.int8)
    part[order[is_last & eligible]] = 2
    part[order[is_second_last & eligible]] = 1
    return part
