"""Splits: random proportions, leave-one-out, temporal order, determinism, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv

from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.splits import SplitConfig, split_interactions, split_sizes

RANDOM = SplitConfig(method="random", seed=0)


def random_log(n: int, n_users: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(n,) users (skewed: some have many rows, some one or two) and timestamps, distinct
    unless ``ties``."""
    rng = np.random.default_rng(seed)
    users = (rng.random(n) ** 2 * n_users).astype(np.int64)
    timestamps = rng.integers(0, 20, size=n) if ties else rng.permutation(n) * 10
    return users, timestamps.astype(np.float64)


# --- random ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "sizes"),
    [
        (1000, (700, 100, 200)),
        (10, (7, 1, 2)),
        (9, (6, 1, 2)),  # round(6.3) = 6, round(0.9) = 1
        (15, (10, 2, 3)),  # round(10.5) = 10 and round(1.5) = 2: half to even
        (25, (18, 2, 5)),  # round(17.5) = 18, round(2.5) = 2
        (3, (2, 0, 1)),
        (1, (1, 0, 0)),
    ],
)
def test_random_split_sizes(n: int, sizes: tuple[int, int, int]) -> None:
    assert split_sizes(n, (0.7, 0.1, 0.2)) == sizes
    part = split_interactions(np.zeros(n, dtype=np.int64), None, RANDOM)
    assert part.dtype == np.int8 and part.shape == (n,)
    assert tuple(np.bincount(part, minlength=3)) == sizes


@pytest.mark.parametrize(
    "ratios", [(0.7, 0.1, 0.2), (0.8, 0.2, 0.0), (0.5, 0.5, 0.0), (0.0, 0.5, 0.5), (1.0, 0.0, 0.0)]
)
def test_split_sizes_add_up(ratios: tuple[float, float, float]) -> None:
    for n in range(200):
        sizes = split_sizes(n, ratios)
        assert sum(sizes) == n and min(sizes) >= 0
        for size, ratio in zip(sizes, ratios, strict=True):
            assert abs(size - ratio * n) <= 1
            if ratio == 0:
                assert size == 0  # regression: (0.5, 0.5, 0) gave one test row for n = 1


def test_random_split_is_a_seeded_permutation() -> None:
    users = np.arange(500)
    first = split_interactions(users, None, RANDOM)
    assert np.array_equal(first, split_interactions(users, None, RANDOM))
    other = split_interactions(users, None, SplitConfig(seed=1))
    assert not np.array_equal(first, other)
    assert np.array_equal(np.bincount(first), np.bincount(other))


def test_random_split_spreads_over_rows() -> None:
    """Not the first 70 % of rows in file order: each decile holds about 70 % train."""
    part = split_interactions(np.zeros(10_000, dtype=np.int64), None, RANDOM)
    train_share = (part.reshape(10, 1000) == 0).mean(axis=1)
    assert np.all(np.abs(train_share - 0.7) < 0.06)


# --- leave-one-out -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_leave_one_out(seed: int, ties: bool) -> None:
    users, timestamps = random_log(400, 60, seed, ties=ties)
    config = SplitConfig(method="leave-one-out", seed=seed)
    part = split_interactions(users, timestamps, config)
    counts = np.bincount(users)[np.unique(users)]
    assert (counts < 3).any() and (counts >= 3).any()  # both kinds of user occur
    for user in np.unique(users):
        rows = np.flatnonzero(users == user)
        mine = part[rows]
        if len(rows) < 3:
            assert (mine == 0).all()
            continue
        assert (mine == 2).sum() == 1 and (mine == 1).sum() == 1
        t_test, t_valid = timestamps[rows[mine == 2]][0], timestamps[rows[mine == 1]][0]
        t_train = timestamps[rows[mine == 0]]
        assert t_test == timestamps[rows].max()
        assert t_valid <= t_test and (t_train <= t_valid).all()
        if not ties:
            assert t_valid == np.sort(timestamps[rows])[-2]
    np.testing.assert_array_equal(part, split_interactions(users, timestamps, config))


def test_leave_one_out_by_hand() -> None:
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    timestamps = np.array([5.0, 1.0, 9.0, 3.0, 1.0, 2.0, 7.0, 8.0, 6.0])
    part = split_interactions(users, timestamps, SplitConfig(method="leave-one-out"))
    assert part.tolist() == [1, 0, 2, 0, 0, 0, 1, 2, 0]


def test_leave_one_out_ties_are_seeded() -> None:
    """All timestamps equal: which row is test depends on the seed only."""
    users = np.repeat(np.arange(50), 5)
    timestamps = np.zeros(len(users))
    parts = [split_interactions(users, timestamps, SplitConfig(method="leave-one-out", seed=s)) for s in (0, 0, 1)]
    np.testing.assert_array_equal(parts[0], parts[1])
    assert not np.array_equal(parts[0], parts[2])
    assert (np.bincount(users[parts[2] == 2]) == 1).all()


# --- temporal ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_temporal_split_orders_time(ties: bool) -> None:
    users, timestamps = random_log(1000, 50, seed=4, ties=ties)
    config = SplitConfig(method="temporal", seed=2)
    part = split_interactions(users, timestamps, config)
    assert tuple(np.bincount(part, minlength=3)) == split_sizes(1000, config.ratios)
    train, valid, test = (timestamps[part == k] for k in range(3))
    assert train.max() <= valid.min() and valid.max() <= test.min()
    assert train.max() <= test.min()
    np.testing.assert_array_equal(part, split_interactions(users, timestamps, config))


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["leave-one-out", "temporal"])
def test_time_splits_need_timestamps(method: str) -> None:
    with pytest.raises(ValueError, match=f"the {method} split needs a 'timestamp' column"):
        split_interactions(np.arange(5), None, SplitConfig(method=method))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["leave-one-out", "temporal"])
def test_prepare_without_timestamps_names_the_column(handmade_dir: Path, tmp_path: Path, method: str) -> None:
    rows = [f"u{u},i{i}" for u in range(3) for i in range(3)]
    write_csv(handmade_dir / "interactions.csv", "user_id,item_id", rows)
    config = PrepareConfig(1, 1, SplitConfig(method=method))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a 'timestamp' column in interactions"):
        prepare_dataset(handmade_dir, tmp_path / "prepared", config)


@pytest.mark.parametrize(
    "kwargs",
    [{"method": "by-user"}, {"ratios": (0.7, 0.2, 0.2)}, {"ratios": (0.9, 0.2, -0.1)}, {"ratios": (0.5, 0.5)}],
)
def test_bad_split_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="split"):
        SplitConfig(**kwargs)  # type: ignore[arg-type]


def test_prepared_leave_one_out(handmade_dir: Path, tmp_path: Path) -> None:
    """Handmade timestamps are 10u + i: each user's i2 is test and i1 valid."""
    config = PrepareConfig(1, 1, SplitConfig(method="leave-one-out"))
    data = prepare_dataset(handmade_dir, tmp_path / "prepared", config)
    assert sorted(zip(data.test.users.tolist(), data.test.items.tolist(), strict=True)) == [(0, 2), (1, 2), (2, 2)]
    assert sorted(zip(data.valid.users.tolist(), data.valid.items.tolist(), strict=True)) == [(0, 1), (1, 1), (2, 1)]
    assert sorted(data.train.items.tolist()) == [0, 0, 0]
