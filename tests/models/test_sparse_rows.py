"""``csr_times_dense`` makes SciPy's additions in SciPy's order: ``csr @ dense`` bit for bit, on
any number of threads, so the user histories of CDL and VPOI (``mean_over_training_items``) are
unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jifr import parallel
from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs
from jifr.models.base import mean_over_training_items
from jifr.models.sparse_rows import csr_times_dense, csr_times_dense_parallel


def random_csr(rng: np.random.Generator, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """Rows of 0 to 60 entries (empty rows too) of values of many magnitudes, duplicates summed."""
    counts = rng.integers(0, 60, n_rows)
    counts[::7] = 0
    rows = np.repeat(np.arange(n_rows), counts)
    cols = rng.integers(0, n_cols, len(rows))
    values = rng.standard_normal(len(rows)) * 10.0 ** rng.integers(-4, 5, len(rows))
    return sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_cols))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parts", [1, 2, 5])
def test_csr_times_dense_has_scipys_bits(parts: int, dtype: type) -> None:
    """float32 values are read as they are and widened, and written rounded to float32: SciPy's
    product of their float64 copy, as float32."""
    rng = np.random.default_rng(parts)
    matrix = random_csr(rng, 90, 40)
    dense = (rng.standard_normal((40, 33)) * 10.0 ** rng.integers(-3, 4, (40, 1))).astype(dtype)
    dense[rng.random(dense.shape) < 0.1] = -0.0  # SciPy adds into zeros: -0.0 entries give +0.0
    out = np.full((90, 33), np.nan, dtype=dtype)  # float32: the float64 sums rounded once
    arrays = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64), matrix.data, dense, out)
    if parts == 1:
        csr_times_dense(0, 90, *arrays)
    else:
        csr_times_dense_parallel(*arrays, parts)
    expected = (matrix @ dense.astype(np.float64)).astype(dtype)
    assert np.array_equal(expected.view(f"i{out.itemsize}"), out.view(f"i{out.itemsize}"))


def test_a_reordered_sum_would_differ() -> None:
    """The check above can fail: adding each row's terms in the reverse order differs."""
    rng = np.random.default_rng(0)
    matrix = random_csr(rng, 90, 40)
    dense = rng.standard_normal((40, 33)) * 10.0 ** rng.integers(-3, 4, (40, 1))
    reversed_sums = np.zeros((90, 33))
    for i in range(90):
        for p in reversed(range(matrix.indptr[i], matrix.indptr[i + 1])):
            reversed_sums[i] += matrix.data[p] * dense[matrix.indices[p]]
    assert not np.array_equal(matrix @ dense, reversed_sums)


@pytest.mark.parametrize("threads", [1, 2])
def test_user_histories_are_scipys_means(threads: int, tiny: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "thread_parts", lambda n: max(1, min(n, threads)))
    inputs = ModelInputs.from_data(tiny)
    items = torch.randn(inputs.n_items, 12, generator=torch.Generator().manual_seed(0))
    train = (inputs.train.csr(inputs.n_users, inputs.n_items) > 0).astype(np.float64)
    counts = np.asarray(train.sum(axis=1)).ravel()
    expected = (sp.diags(1.0 / np.maximum(counts, 1.0)) @ train) @ items.double().numpy()
    assert torch.equal(mean_over_training_items(inputs, items), torch.from_numpy(expected).float())
