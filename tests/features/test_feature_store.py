"""The resumable store writer: cutting a preallocated .npy to the rows written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jifr.features.store import _truncate_npy_rows


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("keep", [0, 1, 7, 10])
def test_truncate_keeps_the_first_rows(tmp_path: Path, dtype: str, keep: int) -> None:
    path = tmp_path / "rows.npy"
    values = np.arange(10 * 1280, dtype=dtype).reshape(10, 1280)
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(100_000, 1280))
    rows[:10] = values
    rows.flush()
    del rows
    _truncate_npy_rows(path, keep)
    np.testing.assert_array_equal(np.load(path), values[:keep])
    assert np.load(path, mmap_mode="r").shape == (keep, 1280)


def test_truncate_refuses_to_grow(tmp_path: Path) -> None:
    path = tmp_path / "rows.npy"
    np.save(path, np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="cannot keep 4 rows"):
        _truncate_npy_rows(path, 4)
