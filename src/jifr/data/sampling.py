"""Vectorised negative sampling for training and for the sampled evaluation protocol."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from jifr.parallel import run_in_parts, thread_parts

SPLIT_KEYS = 1 << 20  # uniform_keys draws blocks of at least this many keys in parallel
BIT_TABLE_PAIRS = 1 << 30  # up to this many (user, item) pairs, PositiveSet keeps a bit per pair (128 MiB)


class PositiveSet:
    """Fast membership test for (user, item) pairs, via int64 keys user * n_items + item: a
    lookup in a table of one bit per pair where it takes at most 128 MiB (``BIT_TABLE_PAIRS``;
    25 MiB for 16k users x 12.7k items), else a binary search in the sorted keys, 20-50x
    slower on random queries (a cache miss at every step)."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        coo = matrix.tocoo()
        n_users, self.n_items = matrix.shape
        # Stored zeros are not positives, and a non-canonical matrix (repeated entries) must
        # not inflate the counts.
        held = coo.data != 0
        keys = np.sort(coo.row[held].astype(np.int64) * self.n_items + coo.col[held])
        # np.unique, as NumPy 2.4 does it (hashing, then a sort), takes 13x longer here
        self.keys = keys[np.diff(keys, prepend=-1) != 0]  # sorted, without repeats (keys are >= 0)
        self.counts = np.bincount(self.keys // self.n_items, minlength=n_users)  # (n_users,)
        self.bits: np.ndarray | None = None  # (ceil(n_users * n_items / 8),) uint8; bit k % 8 of byte k // 8
        if n_users * self.n_items <= BIT_TABLE_PAIRS:
            self.bits = np.zeros(-(-n_users * self.n_items // 8), dtype=np.uint8)
            np.bitwise_or.at(self.bits, self.keys >> 3, (1 << (self.keys & 7)).astype(np.uint8))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array of the broadcast shape of ``users`` and ``items``."""
        keys = np.asarray(users).astype(np.int64) * self.n_items + items
        if self.bits is not None:
            return (self.bits[keys >> 3] >> (keys & 7).astype(np.uint8) & 1).astype(bool)
        if len(self.keys) == 0:
            return np.zeros(keys.shape, dtype=bool)
        where = np.searchsorted(self.keys, keys)
        where = np.minimum(where, len(self.keys) - 1)
        return self.keys[where] == keys


def sample_negatives(
    users: np.ndarray, n_negatives: int, positives: PositiveSet, rng: np.random.Generator
) -> np.ndarray:
    """(len(users), n_negatives) items drawn uniformly from each user's non-positives.

    Rejection sampling: draw all at once, redraw only the rejected cells (in row-major order)
    until none is left; each round looks at the cells still rejected, not at the whole array.
    """
    n_items = positives.n_items
    if (positives.counts[users] >= n_items).any():
        raise ValueError("a user is positive on every item; no negative can be sampled")
    negatives = rng.integers(0, n_items, size=(len(users), n_negatives))
    rows, cols = np.nonzero(positives.contains(users[:, None], negatives))
    while len(rows):
        negatives[rows, cols] = rng.integers(0, n_items, size=len(rows))
        still = positives.contains(users[rows], negatives[rows, cols])
        rows, cols = rows[still], cols[still]
    return negatives


def sample_unrated(
    excluded: sp.csr_matrix, n_samples: int, rng: np.random.Generator, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``excluded`` (a block of users), ``n_samples`` distinct items it does not hold.

    Returns ``(items, valid)`` of shape (B, min(n_samples, n_items)); ``valid`` is False in the
    cells of users with fewer than ``n_samples`` available items (they get all of them).
    Uniform without replacement: the ``n_samples`` smallest of i.i.d. uniform keys, drawn into
    ``keys`` where given (a C-contiguous (B, n_items) float64 array, overwritten: a caller
    sampling block after block reuses its memory; the same draws).
    """
    n_users, n_items = excluded.shape
    n_take = min(n_samples, n_items)
    keys = uniform_keys(rng, (n_users, n_items), keys)
    rows = np.repeat(np.arange(n_users), np.diff(excluded.indptr))
    held = excluded.data != 0  # a stored zero does not exclude its item
    keys[rows[held], excluded.indices[held]] = np.inf
    if n_take == n_items:
        items = np.broadcast_to(np.arange(n_items), (n_users, n_items)).copy()
        return items, np.isfinite(keys)
    return smallest_keys(keys, n_take)


def uniform_keys(rng: np.random.Generator, shape: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """``rng.random(shape, out=out)``: the same values, and ``rng`` left where that leaves it,
    drawn in one block of rows per torch thread (``jifr.parallel``) where there are at least
    ``SPLIT_KEYS`` of them and the bit generator can jump ahead (PCG64, PCG64DXSM: one 64-bit
    draw per value): each thread draws its rows from a copy of the generator moved past the rows
    before them (NumPy releases the GIL while it fills an array). At paper scale a block of 2,622
    users x 12,704 items takes 0.038 s on two threads against 0.074 s on one."""
    out = np.empty(shape) if out is None else out
    bit_generator = rng.bit_generator
    parts = thread_parts(shape[0]) if out.size >= SPLIT_KEYS else 1
    if parts <= 1 or not isinstance(bit_generator, (np.random.PCG64, np.random.PCG64DXSM)):
        return rng.random(shape, out=out)
    state = bit_generator.state
    bounds = [shape[0] * p // parts for p in range(parts + 1)]
    with ThreadPoolExecutor(parts) as pool:
        draws = []
        for p in range(parts):
            copy = type(bit_generator)()
            copy.state = state
            copy.advance(bounds[p] * shape[1])
            rows = out[bounds[p] : bounds[p + 1]]
            draws.append(pool.submit(np.random.Generator(copy).random, rows.shape, out=rows))
        for draw in draws:
            draw.result()
    bit_generator.advance(out.size)  # as drawing them here would; advance forgets a buffered 32-bit draw
    moved = bit_generator.state
    moved["has_uint32"], moved["uinteger"] = state["has_uint32"], state["uinteger"]
    bit_generator.state = moved
    return out


def smallest_keys(keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, finite): the columns of the ``k`` (< width) smallest of each row of ``keys``
    (B, width), uniform on [0, 1) or inf, and whether each of those keys is finite.

    The set a partition of each whole row gives (``np.argpartition``), found faster: the k
    smallest of a row's uniform keys lie below ``k / width`` plus a margin of 6 standard
    deviations and more, so a compiled loop (``_smallest_below``) partitions only each row's keys
    below that (about 1.1 k of them), in increasing column order. A row with fewer than k below
    it (rare, or a row with many inf) is partitioned whole. The keys are random doubles, distinct
    in practice; were two tied at the k-th place, the one in the lower column would be kept.
    """
    n_rows, width = keys.shape
    threshold = (k + 6.0 * np.sqrt(k) + 16.0) / width
    columns = np.empty((n_rows, k), dtype=np.int64)
    finite = np.ones((n_rows, k), dtype=bool)
    found = np.zeros(n_rows, dtype=bool)
    arrays = [np.ascontiguousarray(keys), k, threshold, columns, found]
    run_in_parts(_smallest_below, _smallest_below_parallel, arrays, n_rows)
    few = np.flatnonzero(~found)
    if len(few):
        whole = np.argpartition(keys[few], k - 1, axis=1)[:, :k]
        columns[few] = whole
        finite[few] = np.isfinite(np.take_along_axis(keys[few], whole, axis=1))
    return columns, finite


@njit(cache=True)
def _smallest_below(
    first: int, last: int, keys: np.ndarray, k: int, threshold: float, columns: np.ndarray, found: np.ndarray
) -> None:
    """For each row in [first, last) with at least ``k`` keys below ``threshold``: the columns of
    its k smallest keys into ``columns`` (in increasing order where no key ties the k-th), and
    True into ``found``."""
    width = keys.shape[1]
    below = np.empty(width + 1, dtype=keys.dtype)
    where = np.empty(width + 1, dtype=np.int64)
    for row in range(first, last):
        n = 0
        for column in range(width):  # without a branch: each key is written, kept if below
            below[n], where[n] = keys[row, column], column
            n += keys[row, column] < threshold
        if n < k:
            continue
        kth = np.partition(below[:n], k - 1)[k - 1]
        taken = 0
        for i in range(n):  # those below the k-th, then those equal to it until k are taken
            if below[i] < kth:
                columns[row, taken] = where[i]
                taken += 1
        for i in range(n):
            if taken < k and below[i] == kth:
                columns[row, taken] = where[i]
                taken += 1
        found[row] = True


@njit(cache=True, parallel=True)
def _smallest_below_parallel(
    keys: np.ndarray, k: int, threshold: float, columns: np.ndarray, found: np.ndarray, parts: int
) -> None:
    """``_smallest_below`` of every row, the rows split into ``parts`` runs on numba's threads."""
    n = keys.shape[0]
    for part in prange(parts):
        _smallest_below(part * n // parts, (part + 1) * n // parts, keys, k, threshold, columns, found)
