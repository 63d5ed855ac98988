"""Negative sampling for training and unrated-item sampling for the sampled protocol."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from jifr import parallel
from jifr.data import sampling
from jifr.data.sampling import PositiveSet, sample_negatives, sample_unrated, smallest_keys, uniform_keys


def random_matrix(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


# --- PositiveSet ---------------------------------------------------------------------------------


def test_positive_set_contains() -> None:
    matrix = random_matrix(30, 20, 0.3, seed=0)
    positives = PositiveSet(matrix)
    users, items = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    np.testing.assert_array_equal(positives.contains(users, items), matrix.toarray() > 0)
    np.testing.assert_array_equal(positives.counts, np.diff(matrix.indptr))


def test_bit_table_and_binary_search_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above BIT_TABLE_PAIRS pairs membership is a binary search: the same answers, so the same
    negatives from the same generator."""
    matrix = random_matrix(60, 45, 0.2, seed=8)
    table = PositiveSet(matrix)
    monkeypatch.setattr(sampling, "BIT_TABLE_PAIRS", 60 * 45 - 1)
    search = PositiveSet(matrix)
    assert table.bits is not None and search.bits is None
    users, items = np.meshgrid(np.arange(60), np.arange(45), indexing="ij")
    np.testing.assert_array_equal(table.contains(users, items), search.contains(users, items))
    draws = [sample_negatives(np.arange(60).repeat(5), 3, p, np.random.default_rng(9)) for p in (table, search)]
    np.testing.assert_array_equal(*draws)


def test_positive_set_without_positives() -> None:
    """Regression: an empty matrix raised IndexError (searchsorted into no keys)."""
    positives = PositiveSet(sp.csr_matrix((3, 4)))
    assert not positives.contains(np.array([0, 2]), np.array([3, 0])).any()
    negatives = sample_negatives(np.array([0, 1, 2]), 5, positives, np.random.default_rng(0))
    assert negatives.shape == (3, 5) and negatives.min() >= 0 and negatives.max() < 4


def test_positive_set_with_repeated_entries() -> None:
    """Regression: counts came from indptr, so a non-canonical matrix with a repeated entry
    made a user with a free item look 'positive on every item'."""
    matrix = sp.csr_matrix((np.ones(3), np.array([0, 0, 1]), np.array([0, 3])), shape=(1, 3))
    positives = PositiveSet(matrix)
    assert positives.counts.tolist() == [2]
    negatives = sample_negatives(np.zeros(50, dtype=np.int64), 4, positives, np.random.default_rng(0))
    assert (negatives == 2).all()


# --- sample_negatives ----------------------------------------------------------------------------


def test_negatives_are_never_positives() -> None:
    matrix = random_matrix(300, 80, 0.5, seed=1)
    dense = matrix.toarray() > 0
    rng = np.random.default_rng(2)
    users = rng.integers(0, 300, size=20_000)
    negatives = sample_negatives(users, 7, PositiveSet(matrix), rng)
    assert negatives.shape == (20_000, 7)
    assert negatives.dtype.kind == "i" and negatives.min() >= 0 and negatives.max() < 80
    assert not dense[users[:, None], negatives].any()


def test_negatives_cover_the_non_positives_uniformly() -> None:
    """One user positive on 3 of 10 items: every other item drawn about 1/7 of the time."""
    matrix = sp.csr_matrix(np.isin(np.arange(10), [0, 2, 5]).astype(np.float32)[None, :])
    negatives = sample_negatives(np.zeros(7000, dtype=np.int64), 10, PositiveSet(matrix), np.random.default_rng(3))
    counts = np.bincount(negatives.ravel(), minlength=10)
    assert counts[[0, 2, 5]].tolist() == [0, 0, 0]
    allowed = counts[[1, 3, 4, 6, 7, 8, 9]]
    expected = 70_000 / 7  # 10,000 each; the binomial std is about 93
    assert np.all(np.abs(allowed - expected) < 500), allowed


def test_negatives_for_a_nearly_full_user() -> None:
    """A user positive on all but one item always gets that item."""
    row = np.ones(50, dtype=np.float32)
    row[17] = 0
    positives = PositiveSet(sp.csr_matrix(np.vstack([row, np.zeros(50, dtype=np.float32)])))
    negatives = sample_negatives(np.array([0, 1, 0]), 20, positives, np.random.default_rng(4))
    assert (negatives[[0, 2]] == 17).all()
    assert len(np.unique(negatives[1])) > 1


def test_negatives_are_seeded() -> None:
    positives = PositiveSet(random_matrix(40, 30, 0.3, seed=5))
    users = np.arange(40).repeat(3)
    first = sample_negatives(users, 4, positives, np.random.default_rng(6))
    again = sample_negatives(users, 4, positives, np.random.default_rng(6))
    other = sample_negatives(users, 4, positives, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_user_positive_on_every_item() -> None:
    matrix = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    positives = PositiveSet(matrix)
    with pytest.raises(ValueError, match="positive on every item"):
        sample_negatives(np.array([1, 0]), 2, positives, np.random.default_rng(0))
    assert (sample_negatives(np.array([1]), 5, positives, np.random.default_rng(0)) > 0).all()


# --- sample_unrated --------------------------------------------------------------------------------


def check_unrated(excluded: sp.csr_matrix, items: np.ndarray, valid: np.ndarray, n_samples: int) -> None:
    """Distinct items per row, no excluded item among the valid ones, all available when few."""
    n_users, n_items = excluded.shape
    dense = excluded.toarray() > 0
    assert items.shape == valid.shape == (n_users, min(n_samples, n_items))
    for row in range(n_users):
        assert len(np.unique(items[row])) == items.shape[1]
        chosen = items[row][valid[row]]
        assert not dense[row, chosen].any()
        available = np.flatnonzero(~dense[row])
        if len(available) <= n_samples:
            assert sorted(chosen.tolist()) == available.tolist()
        else:
            assert valid[row].all()


@pytest.mark.parametrize("n_samples", [1, 5, 30, 39, 40, 100])
def test_sample_unrated(n_samples: int) -> None:
    dense = random_matrix(60, 40, 0.4, seed=8).toarray()
    dense[3] = 1  # no item available
    dense[4] = 0  # every item available
    dense[5] = np.arange(40) < 38  # two available
    excluded = sp.csr_matrix(dense)
    items, valid = sample_unrated(excluded, n_samples, np.random.default_rng(9))
    check_unrated(excluded, items, valid, n_samples)
    assert not valid[3].any()
    assert valid[4].all()
    assert valid[5].sum() == min(2, n_samples)


def test_sample_unrated_is_seeded_and_uniform() -> None:
    excluded = sp.csr_matrix(np.isin(np.arange(20), [1, 4, 9]).astype(np.float32)[None, :].repeat(4000, 0))
    items, valid = sample_unrated(excluded, 5, np.random.default_rng(10))
    again, _ = sample_unrated(excluded, 5, np.random.default_rng(10))
    other, _ = sample_unrated(excluded, 5, np.random.default_rng(11))
    np.testing.assert_array_equal(items, again)
    assert not np.array_equal(items, other)
    assert valid.all()
    counts = np.bincount(items.ravel(), minlength=20)
    assert counts[[1, 4, 9]].tolist() == [0, 0, 0]
    expected = 4000 * 5 / 17  # about 1176 each; std about 31
    assert np.all(np.abs(np.delete(counts, [1, 4, 9]) - expected) < 160), counts


def test_stored_zeros_exclude_nothing() -> None:
    """Regression: a stored zero (e.g. left by ``m[u, i] = 0``) counted as an interaction."""
    matrix = sp.csr_matrix((np.array([1.0, 0.0, 0.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 3))
    positives = PositiveSet(matrix)
    assert positives.contains(np.zeros(3, dtype=np.int64), np.arange(3)).tolist() == [True, False, False]
    assert positives.counts.tolist() == [1]
    negatives = sample_negatives(np.zeros(100, dtype=np.int64), 3, positives, np.random.default_rng(0))
    assert set(negatives.ravel().tolist()) == {1, 2}
    items, valid = sample_unrated(matrix, 3, np.random.default_rng(0))
    assert sorted(items[valid].tolist()) == [1, 2]


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("k", [1, 3, 50, 199])
def test_smallest_keys_are_those_of_a_partition_of_each_whole_row(
    k: int, parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows that hold k keys below the threshold and those that do not (many inf: the whole
    row is partitioned) give the set np.argpartition gives, and which of its keys are finite, with
    the rows in one part or split across numba's threads."""
    monkeypatch.setattr(parallel, "thread_parts", lambda n: max(1, min(n, parts)))
    rng = np.random.default_rng(k)
    keys = rng.random((300, 200))
    keys[rng.random(keys.shape) < 0.3] = np.inf
    keys[:20, 10:] = np.inf  # at most 10 finite keys: fewer than k below any threshold
    keys[20:30] = rng.random((10, 200)) ** 0.2  # skewed towards 1: few below the threshold
    columns, finite = smallest_keys(keys, k)
    expected = np.argpartition(keys, k - 1, axis=1)[:, :k]
    expected_finite = np.isfinite(np.take_along_axis(keys, expected, axis=1))
    for row in range(len(keys)):
        kept = np.sort(columns[row][finite[row]])
        assert np.array_equal(kept, np.sort(expected[row][expected_finite[row]])), row
        assert len(np.unique(columns[row])) == k
    assert np.array_equal(finite.sum(1), expected_finite.sum(1))


def test_smallest_keys_partition_only_below_the_threshold_where_they_can(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of uniform keys never reach the whole-row partition (which is there for rare rows)."""
    calls = []
    original = np.argpartition
    monkeypatch.setattr(np, "argpartition", lambda *a, **kw: calls.append(a[0].shape) or original(*a, **kw))
    columns, finite = smallest_keys(np.random.default_rng(0).random((500, 5000)), 100)
    assert calls == [] and finite.all() and columns.shape == (500, 100)


def test_sample_unrated_draws_the_same_keys_into_a_given_buffer() -> None:
    excluded = random_matrix(30, 50, 0.3, seed=4)
    fresh = sample_unrated(excluded, 7, np.random.default_rng(2))
    keys = np.full((30, 50), np.nan)
    reused = sample_unrated(excluded, 7, np.random.default_rng(2), keys)
    assert np.array_equal(fresh[0], reused[0]) and np.array_equal(fresh[1], reused[1])
    assert np.isfinite(keys).sum() == 30 * 50 - (excluded.toarray() > 0).sum()  # the keys were drawn there


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937])
def test_uniform_keys_are_the_generators_draws_in_any_number_of_parts(
    parts: int, bit_generator: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows drawn in parallel blocks from generators moved ahead equal one draw of the whole
    array, and the generator ends where that draw leaves it, a buffered 32-bit draw included (the
    next integers and keys are the same too). A generator that cannot jump ahead draws in one go."""
    monkeypatch.setattr(sampling, "SPLIT_KEYS", 0)
    monkeypatch.setattr(parallel, "thread_parts", lambda n: max(1, min(n, parts)))

    def generator() -> np.random.Generator:
        rng = np.random.Generator(bit_generator(11))
        rng.integers(0, 1000, dtype=np.int32)  # leaves half of a 64-bit draw buffered
        return rng

    expected_rng, rng = generator(), generator()
    expected = expected_rng.random((7, 13))
    keys = np.full((7, 13), np.nan)
    assert uniform_keys(rng, (7, 13), keys) is keys
    assert np.array_equal(keys, expected)
    assert (
        rng.integers(0, 1000, 5, dtype=np.int32).tolist() == expected_rng.integers(0, 1000, 5, dtype=np.int32).tolist()
    )
    assert np.array_equal(uniform_keys(rng, (4, 5)), expected_rng.random((4, 5)))
