"""Item caches read each chunk of items' frames into one buffer reused chunk after chunk
(FrameStore.features(rows, into), FrameStore.chunk_buffer): the same values as fresh reads, so
every cache is unchanged bit for bit, whatever the buffer held before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs, build_model
from jifr.models import frames as frames_module
from jifr.models.frames import FrameStore

CHUNK_BUFFER = FrameStore.chunk_buffer


def stale_buffer(store: FrameStore, device: torch.device | None = None) -> torch.Tensor:
    """``chunk_buffer`` filled with NaN, as a stale buffer could be."""
    return CHUNK_BUFFER(store, device).fill_(float("nan"))


@pytest.mark.parametrize("rows", [[4, 5, 6, 7], [9, 2, 2, 40, 3]], ids=["consecutive", "scattered"])
def test_features_read_into_a_buffer_equal_fresh_reads(rows: list[int], tiny: PreparedData) -> None:
    store = FrameStore(tiny.frames)
    index = torch.tensor(rows)
    expected = torch.from_numpy(np.asarray(tiny.frames.features[rows], dtype=np.float32))
    buffer = torch.full((10, store.dim), float("nan"))
    got = store.features(index, into=buffer)
    assert torch.equal(got, expected) and torch.equal(store.features(index), expected)
    assert got.data_ptr() == buffer.data_ptr()  # read into the buffer, not into fresh memory
    store.training_features(torch.tensor([0, 1]))  # training keeps a float32 copy of every feature
    assert torch.equal(store.features(index, into=buffer), expected)


def test_the_chunk_buffer_holds_the_largest_chunk(tiny: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "ITEM_CHUNK", 3)
    store = FrameStore(tiny.frames)
    largest = max(int(store.counts[chunk].sum()) for chunk in store.item_chunks())
    assert len(store.item_chunks()) > 2 and store.chunk_buffer().shape == (largest, store.dim)


@pytest.mark.parametrize("name", ["jifr", "cdl", "acf", "vbpr"])
def test_item_caches_read_through_a_reused_buffer_are_unchanged(
    name: str, tiny: PreparedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 3 items (the tiny set's 1-3 frames each: chunks of different sizes, so a
    smaller chunk follows a larger one in the buffer), read from the memory map into a
    NaN-filled buffer, give the cache that views of the float32 copy training keeps give."""
    monkeypatch.setattr(frames_module, "ITEM_CHUNK", 3)
    inputs = ModelInputs.from_data(tiny)
    from_views = build_model(name, inputs, seed=4)
    from_views.store.training_features(torch.tensor([0]))  # later reads: views of the float32 copy
    from_views.eval()
    monkeypatch.setattr(FrameStore, "chunk_buffer", stale_buffer)
    from_buffer = build_model(name, inputs, seed=4).eval()
    expected, got = from_views.item_cache(), from_buffer.item_cache()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
