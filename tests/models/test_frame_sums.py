"""``item_sums`` adds each item's frames in NumPy's order: the sums of ``np.add.reduceat`` bit for
bit (signed zeros too), on both sides of every threshold of NumPy's pairwise sum, so the item
means of VBPR, VPOI and CDL are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepared import PreparedData
from jifr.models import frames as frames_module
from jifr.models.frame_sums import BLOCK, UNROLL, item_sums
from jifr.models.frames import FrameStore

THRESHOLD_COUNTS = [
    1,
    2,
    UNROLL,
    UNROLL + 1,
    UNROLL + 2,
    2 * UNROLL + 1,
    BLOCK,
    BLOCK + 1,
    BLOCK + 2,
    2 * BLOCK + 3,
    700,
]


def reduceat_bits(block: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NumPy's sums, item_sums') as int32 bit patterns."""
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    out = np.full((len(counts), block.shape[1]), np.nan, dtype=np.float32)
    item_sums(block, starts, counts.astype(np.int64), out)
    return np.add.reduceat(block, starts, axis=0).view(np.int32), out.view(np.int32)


@pytest.mark.parametrize("width", [1, 5, 300])
def test_item_sums_have_the_bits_of_reduceat(width: int) -> None:
    rng = np.random.default_rng(width)
    counts = np.r_[THRESHOLD_COUNTS, rng.integers(1, 40, 30)]
    scale = 10.0 ** rng.integers(-3, 4, size=(int(counts.sum()), 1))  # rows of different magnitudes
    block = (rng.standard_normal((int(counts.sum()), width)) * scale).astype(np.float32)
    block[rng.random(block.shape) < 0.1] = -0.0  # signed zeros: -0.0 + -0.0 stays -0.0 in NumPy
    block[rng.random(block.shape) < 0.05] = 0.0
    expected, got = reduceat_bits(block, counts)
    assert np.array_equal(expected, got)


def test_a_plain_running_sum_would_differ() -> None:
    """The check above can fail: adding the rows one after another is another order."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((BLOCK + 1, 64)).astype(np.float32)
    running = block[0].copy()
    for row in block[1:]:
        running = running + row
    assert not np.array_equal(np.add.reduceat(block, [0], axis=0)[0], running)


def test_item_means_are_the_means_of_reduceat_sums(tiny: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "ITEM_CHUNK", 3)  # several chunks, read through one buffer
    store = FrameStore(tiny.frames)
    features = np.asarray(tiny.frames.features, dtype=np.float32)
    sums = np.add.reduceat(features, tiny.frames.indptr[:-1], axis=0)
    expected = torch.from_numpy(sums) / store.counts[:, None]
    assert torch.equal(store.item_means(), expected)
